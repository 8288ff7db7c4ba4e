"""`python -m training sweep`: plan files, runs as child processes, resume, deadline, report."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training._tiny import TINY
from training.config import ConfigError
from training.sweep_plan import load_plan

REPO = Path(__file__).resolve().parents[2]


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_plan_gives_one_run_per_variant_and_seed_with_typed_settings(tmp_path: Path) -> None:
    plan = load_plan(
        _plan(
            tmp_path,
            """
            preset = "digits-jem"
            seeds = [0, 3]
            [set]
            ema_decay = 0.99
            [variants.preset]
            [variants.wide]
            backbone_kwargs = { width = 8 }
            load_best_model_at_end = true
            decay_at = [0.5, 0.75]
            """,
        ),
        threads=2,
        extra=("iterations=7",),
    )
    assert [r.name for r in plan.runs] == ["preset-s0", "preset-s3", "wide-s0", "wide-s3"]
    wide = plan.runs[3].config
    assert (wide.seed, wide.ema_decay, wide.iterations, wide.num_threads) == (3, 0.99, 7, 2)
    assert wide.backbone_kwargs == {"width": 8}
    assert wide.load_best_model_at_end is True
    assert wide.decay_at == (0.5, 0.75)
    assert plan.runs[0].config.backbone_kwargs != {"width": 8}  # the preset's own


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('preset = "nope"\n[variants.a]', "preset must be one of"),
        ('preset = "digits-jem"', "needs at least one [variants.NAME] table"),
        ('preset = "digits-jem"\nseeds = []\n[variants.a]', "seeds must be a non-empty list"),
        ('preset = "digits-jem"\n[variants.a]\nseed = 2', "variants.a sets seed"),
        (
            'preset = "digits-jem"\n[variants.a]\nlr = -1',
            "variants.a: invalid training config: lr must be > 0",
        ),
        ('preset = "digits-jem"\n[variants.a]\nbogus = 1', "variants.a: unknown config key"),
        (
            'preset = "digits-jem"\nsed = [1]\n[variants.a]',
            "unknown top-level key 'sed'; did you mean 'seeds'?",
        ),
        ("preset = ", "not valid TOML"),
        ('preset = "digits-jem"\n[set]\niteratons = 5\n[variants.a]', "[set]: unknown config"),
        ('preset = "digits-jem"\n[variants.a]\niteratons = 5', "did you mean 'iterations'?"),
        (
            'preset = "folder-jem"\n[variants.a]',
            "data_root None ([set] / --data-root) is not a directory",
        ),
        ('preset = "digits-jem"\n[ood]\nx = "nowhere"\n[variants.a]', "[ood] x = 'nowhere'"),
    ],
)
def test_a_bad_plan_is_one_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_plan(_plan(tmp_path, text))
    assert message in str(info.value)


def test_a_command_line_setting_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--set: unknown config key 'iteratons'; did you"):
        load_plan(_plan(tmp_path, 'preset = "digits-jem"\n[variants.a]'), extra=("iteratons=1",))


def _sweep(plan: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tiny = [arg for setting in TINY for arg in ("--set", setting)]
    command = [sys.executable, "-m", "training", "sweep", str(plan), "--out", str(out)]
    return subprocess.run(
        [*command, *tiny, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_sweep_trains_screens_skips_what_is_done_and_leaves_out_a_changed_run(
    tmp_path: Path,
) -> None:
    plan = _plan(
        tmp_path,
        'preset = "digits-baseline"\nseeds = [0, 1]\n[variants.preset]\n'
        "[variants.diverges]\ninduce_divergence_at = 3\nguard_retries = 0\n",
    )
    out = tmp_path / "out"
    first = _sweep(plan, out, "--parallel", "2")
    assert first.returncode == 1, first.stderr  # two runs failed
    record = json.loads((out / "sweep.json").read_text())
    runs = {r["name"]: r for r in record["runs"]}
    assert [runs[f"preset-s{s}"]["status"] for s in (0, 1)] == ["trained", "trained"]
    assert [runs[f"diverges-s{s}"]["returncode"] for s in (0, 1)] == [3, 3]  # the guard's exit
    assert "metrics" not in runs["diverges-s0"]
    screened = runs["preset-s0"]["metrics"]
    assert 0.0 < screened["accuracy"] <= 1.0
    assert set(screened["auroc"]) >= {"uniform_noise", "constant"}
    assert "seed=0" in runs["preset-s0"]["overrides"]
    assert (record["means"][0]["variant"], record["means"][0]["n"]) == ("preset", 2)
    assert "`diverges-s0`: failed, exit code 3" in (out / "sweep.md").read_text()
    assert "non-finite" in (out / "logs" / "diverges-s0.log").read_text()

    again = _sweep(plan, out)  # the failed runs are not retried, the others not retrained
    assert again.returncode == 1
    assert "started" not in again.stdout
    runs = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert runs["preset-s1"]["status"] == "done before"
    assert runs["diverges-s0"]["status"] == "failed before"
    assert "--retry-failed" in runs["diverges-s0"]["error"]

    plan.write_text(  # the failing variant fixed: a new try, not "failed before"
        'preset = "digits-baseline"\nseeds = [0, 1]\n[variants.preset]\n'
        "[variants.diverges]\nguard_retries = 0\n"
    )
    dry = _sweep(plan, out, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "# preset-s0: done" in dry.stdout
    assert "# diverges-s0: new" in dry.stdout
    fixed = _sweep(plan, out, "--parallel", "2")
    assert fixed.returncode == 0, fixed.stderr
    runs = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert runs["diverges-s1"]["status"] == "trained"

    plan.write_text('preset = "digits-baseline"\nseeds = [0, 1]\n[variants.preset]\n')
    with (out / ".lock").open("a") as lock:  # a sweep already running with this --out
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = _sweep(plan, out)
    assert second.returncode == 2
    assert f"another sweep is running with --out {out}" in second.stderr
    done = _sweep(plan, out)
    assert done.returncode == 0, done.stderr
    runs = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert {r["status"] for r in runs.values()} == {"done before"}
    assert runs["preset-s0"]["train_seconds"] > 0  # the run's own loop time, from its manifest

    plan.write_text(
        'preset = "digits-baseline"\nseeds = [0]\n[variants.preset]\nlr = 0.01\n[variants.new]\n'
    )
    changed = _sweep(plan, out)  # the changed run is left out, the new one trains
    assert changed.returncode == 1, changed.stderr
    runs = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert runs["preset-s0"]["status"] == "conflict"
    assert "trained with another config (differs in ['lr'])" in runs["preset-s0"]["error"]
    assert "delete preset-s0:" in runs["preset-s0"]["error"]
    assert runs["new-s0"]["status"] == "trained"


@pytest.mark.slow
def test_the_deadline_stops_runs_and_screens_what_finished(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 'preset = "digits-baseline"\nseeds = [0, 1]\n[variants.long]\n')
    out = tmp_path / "out"
    result = _sweep(plan, out, "--set", "iterations=100000", "--deadline-minutes", "0.2")
    assert result.returncode == 0, result.stderr
    runs = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}
    assert runs["long-s0"]["status"] == "stopped (deadline)"
    assert runs["long-s1"]["status"] == "not started (deadline)"
    assert runs["long-s0"]["seconds"] >= 12
    assert "deadline; stopping long-s0\n" in result.stdout


def test_a_failed_runs_reason_is_its_error_line_else_its_last_line(tmp_path: Path) -> None:
    from training.sweep import _error_line

    log = tmp_path / "run.log"
    log.write_text("$ python -m training train\nerror: lr must be > 0 (-v for the traceback)\n\n")
    assert _error_line(log) == "error: lr must be > 0 (-v for the traceback)"
    log.write_text("Traceback (most recent call last):\n  ...\nValueError: 1 class\n")
    assert _error_line(log) == "ValueError: 1 class"
    log.write_text("")
    assert _error_line(log) == ""
