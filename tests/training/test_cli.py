from __future__ import annotations

import argparse

import pytest

from training.cli import SUBCOMMANDS, build_parser, main


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
