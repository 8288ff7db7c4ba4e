"""`python -m training steps`: a run's kept checkpoints on validation, and what choosing gains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.cli import main
from training.steps import crossfit_choice, run_versions, weights_step
from training.trainer import Trainer


def _correct(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def test_the_step_chosen_on_one_half_is_scored_on_the_other() -> None:
    right, half = [1] * 40, [1, 0] * 20
    result = crossfit_choice(_correct(half, right, half), [2, 4, 6], first_step=0, halvings=5)
    assert result["chosen"] == 1.0  # step 4 is right everywhere: always chosen
    assert result["chosen_steps"] == {4: 10}
    assert result["last"] == pytest.approx(result["chosen"] - result["gain"])
    assert 0.3 < result["last"] < 0.7
    assert result["full_choice"] == 4


def test_ties_go_to_the_later_step_and_candidates_start_at_first_step() -> None:
    right, wrong = [1] * 10, [0] * 10
    tied = crossfit_choice(_correct(right, right, wrong), [2, 4, 6], first_step=0, halvings=3)
    assert tied["chosen_steps"] == {4: 6}
    late = crossfit_choice(_correct(right, right, wrong), [2, 4, 6], first_step=5, halvings=3)
    assert (late["chosen_steps"], late["gain"], late["gain_std"]) == ({6: 6}, 0.0, 0.0)
    with pytest.raises(ValueError, match="no kept step at or after step 7"):
        crossfit_choice(_correct(right, right, wrong), [2, 4, 6], first_step=7)


def test_the_command_reads_every_kept_version_of_the_run(
    tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path)
    every_2 = [
        "validate_every=2",
        "checkpoint_every=2",
        "keep_checkpoints=4",
        "keep_checkpoints_final=4",
    ]
    config = tiny_config(*every_2, "px_weight=0", "load_best_model_at_end=true")
    result = Trainer(config, name="run", store=store, progress=False).fit()
    record = store.manifest(str(result.ref)).training["selection"]
    assert isinstance(record, dict)
    # the same training without its checkpoints kept (what it keeps is not its trajectory)
    rerun = tiny_config("validate_every=2", "px_weight=0")
    Trainer(rerun, name="other", store=store, progress=False).fit()
    code = main(["steps", "run:2", "--store", str(tmp_path), "--threads", "1", "--halvings", "4"])
    out = capsys.readouterr().out
    assert code == 0
    # the same figures the run logged at its validations: the checkpoints hold those weights
    by_step = ", ".join(f"{s}: {100 * a:.2f}%" for s, a in record["validations"][:3])
    assert f"val acc by step: {by_step}, 8: " in out
    assert "cross-fitted (4 halvings x 2, seed 0): chosen" in out
    # the final version holds the chosen step's weights; the last step's are a checkpoint
    last = store.manifest("run:4")
    assert (last.stage, last.training["step"]) == ("checkpoint", 8)
    final = store.manifest("run:5")
    assert weights_step(final) == record["chosen_step"]
    assert [step for step, _ in run_versions(store, "run")] == [2, 4, 6, 8]
    # two stores of one training read as one run: the later one's version of a step wins
    code = main(["steps", "run", "other", "--one-run", "--store", str(tmp_path), "--halvings", "2"])
    assert code == 0
    assert "run + other (" in capsys.readouterr().out
    # runs of different trainings are refused as one run, naming what differs
    Trainer(tiny_config(), name="unlike", store=store, progress=False).fit()
    code = main(["steps", "run", "unlike", "--one-run", "--store", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "not one training" in err
    assert "px_weight" in err
    assert "keep_checkpoints" not in err
    # a run whose checkpoints were not kept: one line saying how to keep them
    code = main(["steps", "other", "--store", str(tmp_path)])
    assert code == 2
    assert "keep_checkpoints_final" in capsys.readouterr().err
