"""``python -m training SUBCOMMAND ...``: a small argparse dispatcher.

A subcommand is a module-level function ``register(subparsers)`` that adds its parser and sets
``handler`` (a callable taking the parsed namespace and returning an exit code). Adding one is
two lines in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SUBCOMMANDS", "add_model_source_args", "build_parser", "main", "set_threads"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def add_model_source_args(p: argparse.ArgumentParser) -> None:
    """--store, --data-root and --threads: what every subcommand reading a stored model takes."""
    p.add_argument("--store", default=None, help="model store root (default: JEM_MODEL_STORE)")
    p.add_argument("--data-root", default=None, help="data root for CIFAR/SVHN/folder data")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def register_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from training.config import PRESETS

    p = sub.add_parser(
        "train",
        help="train a model into the model store",
        description="Train a JEM (or, with px_weight=0, its softmax baseline) into the store.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named configuration")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set lr=1e-4",
    )
    p.add_argument("--name", help="model name in the store (default: the preset's name)")
    p.add_argument("--resume", metavar="REF", help="continue from a checkpoint, e.g. digits-jem:3")
    p.add_argument("--store", type=Path, help="model store root (default: $JEM_MODEL_STORE)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from model_store import ModelStore
    from training.checkpoint import load_training_state
    from training.config import ConfigError, TrainConfig, apply_overrides, preset
    from training.distributed import cleanup, setup
    from training.guard import TrainingDiverged
    from training.trainer import Trainer

    store = ModelStore(args.store)
    try:
        if args.resume:
            ref_name = args.resume.partition(":")[0]
            config = load_training_state(store, args.resume)[1]
            name = args.name or ref_name
        elif args.preset:
            config, name = preset(args.preset), args.name or args.preset
        else:
            config, name = TrainConfig(), args.name or "model"
        config = apply_overrides(config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = setup(config.device)
    command = shlex.join(["python", "-m", "training", *sys.argv[1:]])
    trainer = Trainer(
        config, name=name, store=store, info=info, command=command, progress=not args.no_progress
    )
    try:
        if args.resume:
            trainer.restore(args.resume)
        result = trainer.fit()
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        cleanup(info)
    if result.ref is not None:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        print(f"saved {result.ref} to {store.path(result.ref)}")
        print(f"steps={result.steps} duration_s={result.duration_s:.1f} {metrics}")
    return 0


# name -> registration function; the evaluation package adds "evaluate" and "calibrate" here
SUBCOMMANDS: dict[str, Register] = {
    "train": register_train,
    "calibrate": lambda sub: _lazy("training.calibrate").register(sub),
    "evaluate": lambda sub: _lazy("training.evaluate").register(sub),
    "screen": lambda sub: _lazy("training.screen").register(sub),
    "data": lambda sub: _lazy("training.datasets.cli").register(sub),
}


def _lazy(module: str) -> Any:
    # imported on use: evaluation pulls in matplotlib and scikit-learn, training needs neither
    return importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS.values():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
