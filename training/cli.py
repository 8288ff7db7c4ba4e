"""``python -m training SUBCOMMAND ...``: a small argparse dispatcher.

A subcommand is a module-level function ``register(subparsers)`` that adds its parser and sets
``handler`` (a callable taking the parsed namespace and returning an exit code). Adding one is
two lines in :data:`SUBCOMMANDS` (and its one-line summary in :data:`SUMMARIES`). Only the
subcommand being run is registered in full, so ``--help`` answers before torch is imported.

A user's mistake (a bad setting, a missing or malformed data set, an unknown model) ends in a
one-line ``error: ...`` and exit code 2; ``-v`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "SUBCOMMANDS",
    "add_model_source_args",
    "add_set_argument",
    "build_parser",
    "main",
    "set_threads",
]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


DESCRIPTION = """Train JEM image classifiers into the model store, then calibrate and evaluate them.

  python -m training train --preset digits-jem --store DIR
  python -m training train --preset folder-jem --data-root IMAGES/ --name mine --store DIR
  python -m training calibrate mine --store DIR
  python -m training evaluate mine --store DIR --out report/

docs/your-data.md walks from an image folder to a served model; docs/training.md has every key."""


def add_model_source_args(p: argparse.ArgumentParser) -> None:
    """--store, --data-root and --threads: what every subcommand reading a stored model takes."""
    p.add_argument("--store", default=None, help="model store root (default: JEM_MODEL_STORE)")
    p.add_argument("--data-root", default=None, help="data root for CIFAR/SVHN/folder data")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    add_verbose(p)


def add_verbose(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the subcommand it sets the flag, absent it leaves the top level's
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


def add_set_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: `train` and `sweep`."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def register_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from training.presets import PRESETS

    p = sub.add_parser(
        "train",
        help="train a model into the model store",
        description="Train a JEM (or, with px_weight=0, its softmax baseline) into the store.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named configuration")
    add_set_argument(p, "override one config key (repeatable), e.g. --set lr=1e-4")
    p.add_argument("--name", help="model name in the store (default: the preset's name)")
    p.add_argument("--resume", metavar="REF", help="continue from a checkpoint, e.g. digits-jem:3")
    add_model_source_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="time a few iterations, print the estimate for the whole run, and exit",
    )
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from model_store import InvalidModelName, ModelStore
    from model_store.names import validate_name
    from training.checkpoint import load_training_state
    from training.config import ConfigError, TrainConfig, apply_overrides
    from training.distributed import cleanup, setup
    from training.estimate import estimate_run
    from training.guard import TrainingDiverged
    from training.presets import preset
    from training.trainer import Trainer

    store = ModelStore(args.store)
    if args.name is not None:  # refused now, not when the trained model is saved
        try:
            validate_name(args.name)
        except InvalidModelName as exc:
            print(f"error: --name: {exc}", file=sys.stderr)
            return 2
    try:
        if args.resume:
            ref_name = args.resume.partition(":")[0]
            config = load_training_state(store, args.resume)[1]
            name = args.name or ref_name
        elif args.preset:
            config, name = preset(args.preset), args.name or args.preset
        else:
            config, name = TrainConfig(), args.name or "model"
        # --data-root and --threads are spellings of the keys every subcommand shares
        shared = [f"data_root={args.data_root}"] if args.data_root else []
        shared += [f"num_threads={args.threads}"] if args.threads else []
        config = apply_overrides(config, [*shared, *args.overrides])
    except ConfigError as exc:
        if args.verbose:  # -v: the traceback, as for every other error
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = setup(config.device)
    command = shlex.join(["python", "-m", "training", *sys.argv[1:]])
    try:
        trainer = Trainer(
            config,
            name=name,
            store=store,
            info=info,
            command=command,
            progress=not args.no_progress,
        )
        if args.resume:
            trainer.restore(args.resume)
        if args.estimate:
            estimate = estimate_run(trainer, max(1, config.estimate_iters))
            print(estimate.describe())
            if (warning := estimate.warning()) is not None:
                print(f"warning: {warning}")
            return 0
        result = trainer.fit()
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"interrupted; {_resume_hint(store, name)}", file=sys.stderr)
        return 130
    finally:
        cleanup(info)
    if result.ref is not None:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        print(f"saved {result.ref} to {store.path(result.ref)}")
        print(f"steps={result.steps} duration_s={result.duration_s:.1f} {metrics}")
        store_arg = f" --store {args.store}" if args.store else ""
        print(
            "the test split is not read by train: compare runs on validation with `python -m "
            f"training screen`; once this one is chosen, `python -m training calibrate "
            f"{result.ref}{store_arg}` measures it"
        )
    return 0


def _resume_hint(store: Any, name: str) -> str:
    from model_store import StoreError

    try:
        last = store.list_versions(name)[-1]
    except StoreError:
        return "no checkpoint was saved yet"
    return f"continue with --resume {name}:{last} (the same --store)"


SUMMARIES = {
    "train": "train a model into the model store",
    "calibrate": "fit temperature and OOD thresholds on validation",
    "evaluate": "evaluate a model on its held-out test split",
    "screen": "compare candidate models on validation data (never the test split)",
    "energies": "energies of data, OOD sets, buffer chains and SGLD descents (validation only)",
    "data": "build a real data set as an image folder (emoji from Debian packages)",
    "steps": "validation accuracy of a run's kept checkpoints, and what choosing among them gains",
    "sweep": "train a grid of recipe variants from a plan file, then screen them on validation",
}

# name -> registration function; the evaluation package adds "evaluate" and "calibrate" here
SUBCOMMANDS: dict[str, Register] = {
    "train": register_train,
    "calibrate": lambda sub: _lazy("training.calibrate").register(sub),
    "evaluate": lambda sub: _lazy("training.eval_cli").register(sub),
    "screen": lambda sub: _lazy("training.screen").register(sub),
    "energies": lambda sub: _lazy("training.energies").register(sub),
    "data": lambda sub: _lazy("training.datasets.cli").register(sub),
    "steps": lambda sub: _lazy("training.steps").register(sub),
    "sweep": lambda sub: _lazy("training.sweep").register(sub),
}


def _lazy(module: str) -> Any:
    # imported on use: evaluation pulls in matplotlib and scikit-learn, training needs neither
    return importlib.import_module(module)


class _Parser(argparse.ArgumentParser):
    """No abbreviated long options (argparse's default takes `--thread` for `--threads`), so a
    misspelt option is an error; subcommands' parsers are of this class too. A twin of
    model_store.cli's: importing that one would import torch before a command line is parsed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; given the command line, only its subcommand is registered in full
    (the others by name and summary), so that nothing heavy is imported to parse it."""
    parser: argparse.ArgumentParser = _Parser(
        prog="python -m training",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in SUBCOMMANDS), "")
    for name, register in SUBCOMMANDS.items():
        if chosen is None or name == chosen:
            register(sub)
        else:
            sub.add_parser(name, help=SUMMARIES.get(name))
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    # imported here: by the time a handler has failed, its modules are loaded anyway
    from model_store import StoreError
    from training.checkpoint import ResumeError
    from training.config import ConfigError
    from training.data import DatasetError
    from training.eval_metrics import SplitMismatchError

    return (ConfigError, DatasetError, ResumeError, StoreError, SplitMismatchError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except Exception as exc:
        if args.verbose or not isinstance(exc, _user_errors()):
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception's layout
        print(f"error: {message} (-v for the traceback)", file=sys.stderr)
        return 2
