"""The `python -m training evaluate` command line: its arguments (PGD radii, ``--ood NAME=FOLDER``
sets, shared with `screen`) and the run that prints the headline numbers. What it measures, and
how, is in training/evaluate.py, whose docstring is the command's description.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from model_store import ModelStore
from training import evaluate as evaluate_module
from training.cli import add_model_source_args, set_threads
from training.eval_samples import NOISE_STEPS
from training.evaluate import L2_EPS, LINF_EPS, evaluate

__all__ = ["add_ood_folder_argument", "main", "register", "run"]


def _ood_folder(value: str) -> tuple[str, Path]:
    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {value!r}")
    return name, Path(folder)


def _eps_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"radii must be >= 0, got {text!r}")
    return values


def _linf_eps_list(text: str) -> tuple[float, ...]:
    values = _eps_list(text)
    if 0.1 not in values:  # the report compares models at L-inf 0.1
        raise argparse.ArgumentTypeError(f"L-inf radii must include 0.1, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on its held-out test split",
        description=evaluate_module.__doc__,
    )
    p.add_argument("model", help="model reference: name, name:VERSION or name:ALIAS")
    p.add_argument("--against", metavar="BASELINE", help="the matched softmax baseline")
    p.add_argument("--out", type=Path, help="directory for REPORT.md, metrics.json and PNGs")
    add_model_source_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of OOD sets, PGD starts and SGLD")
    p.add_argument(
        "--per-class", type=int, default=None, help="samples per class (default: test/K)"
    )
    p.add_argument("--pgd-steps", type=int, default=20)
    p.add_argument(
        "--linf-eps",
        type=_linf_eps_list,
        default=LINF_EPS,
        help="PGD L-inf radii, comma-separated, model units; must include 0.1 (the report's check)",
    )
    p.add_argument("--l2-eps", type=_eps_list, default=L2_EPS, help="PGD L2 radii, comma-separated")
    p.add_argument("--sgld-steps", type=int, default=NOISE_STEPS, help="SGLD steps from noise")
    p.add_argument("--notes", type=Path, help="a Markdown file appended to the report")
    add_ood_folder_argument(p, "")
    p.set_defaults(handler=run)


def add_ood_folder_argument(p: argparse.ArgumentParser, note: str) -> None:
    """``--ood NAME=FOLDER`` (repeatable) into ``args.ood_folders``; ``evaluate`` and ``screen``."""
    p.add_argument(
        "--ood",
        dest="ood_folders",
        type=_ood_folder,
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="an OOD set of your own images (repeatable): every image under FOLDER, converted "
        "as the model's uploads are" + note,
    )


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    report = evaluate(
        ModelStore(args.store),
        args.model,
        against=args.against,
        out=args.out,
        seed=args.seed,
        per_class=args.per_class,
        pgd_steps=args.pgd_steps,
        linf_eps=args.linf_eps,
        l2_eps=args.l2_eps,
        sgld_steps=args.sgld_steps,
        data_root=args.data_root,
        ood_folders=dict(args.ood_folders),
        notes=args.notes.read_text() if args.notes else "",
        command=shlex.join(["python", "-m", "training", *sys.argv[1:]]),
    )
    for label, r in report["results"].items():
        c = r["classification"]
        print(
            f"{label} {r['ref']}: accuracy {c['accuracy']:.4f}  ECE {100 * c['ece']:.2f}% raw, "
            f"{100 * c['ece_calibrated']:.2f}% calibrated"
        )
    if args.out:
        print(f"report written to {args.out / 'REPORT.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["evaluate", *(argv or [])]))
