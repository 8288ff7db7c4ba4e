from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training._tiny import TINY
from training.cli import SUBCOMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_train_arguments_parse() -> None:
    args = build_parser().parse_args(
        ["train", "--preset", "digits-jem", "--set", "lr=1e-3", "--set", "seed=3", "--name", "x"]
    )
    assert args.command == "train"
    assert args.overrides == ["lr=1e-3", "seed=3"]
    assert args.name == "x"


def test_bad_override_exits_2_with_the_valid_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "digits-jem", "--set", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'nope'" in err
    assert "px_weight" in err


def test_unknown_preset_is_rejected_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--preset", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_subcommand_is_a_few_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = sub.add_parser("hello")
        p.add_argument("who")
        p.set_defaults(handler=lambda args: 7 if args.who == "world" else 1)

    monkeypatch.setitem(SUBCOMMANDS, "hello", register)
    assert main(["hello", "world"]) == 7


@pytest.mark.slow
def test_ctrl_c_in_train_is_one_line_that_says_how_to_resume(tmp_path: Path) -> None:
    tiny = [arg for setting in TINY for arg in ("--set", setting)]
    train = [sys.executable, "-m", "training", "train", "--preset", "digits-baseline", *tiny]
    child = subprocess.Popen(
        [*train, "--set", "iterations=100000", "--name", "i", "--store", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "i").is_dir() and time.monotonic() < deadline:
        time.sleep(0.5)  # its first checkpoint
    time.sleep(2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted; continue with --resume i:"), err
    assert "Traceback" not in err


def test_a_bad_name_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.trainer

    monkeypatch.setattr(training.trainer, "Trainer", lambda *a, **k: pytest.fail("trained"))
    argv = ["train", "--preset", "digits-jem", "--name", "bad name/x", "--store", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --name: invalid model name 'bad name/x'")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_options_are_never_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["train", "--preset", "digits-jem", "--thread", "1"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --thread 1" in capsys.readouterr().err
