"""`python -m training screen MODEL [MODEL ...]`: compare candidate runs on validation data only.

Choosing a recipe by its test-split numbers would make those numbers optimistic (the test split
would have been fitted, by hand). This command ranks candidates with the validation split and
OOD sets drawn with a different seed from the report's, so the test split stays untouched until
the chosen model is evaluated once:
- accuracy and ECE (raw and temperature-scaled) on validation; the temperature is cross-fitted
  (fitted on one half of the validation split, measured on the other, and the other way round),
  since a temperature measured on the data it was fitted on would look better than it is;
- AUROC of every OOD score (energy, grad-norm, max-softmax), validation images against each
  standard OOD set and each ``--ood NAME=DIR`` folder;
- with ``--samples STEPS``, class-conditional samples judged by the report's pixel SVC, drawn
  with seeds the report does not use (training/screen_samples.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from jem.metrics import accuracy, auroc, expected_calibration_error, fit_temperature
from jem.ood import OOD_SCORES
from model_store import LoadedModel, ModelStore
from training.cli import add_model_source_args, set_threads
from training.data import Dataset
from training.eval_cli import add_ood_folder_argument
from training.eval_metrics import ECE_BINS, batched_logits, batched_scores, dataset_for
from training.ood_sets import OOD_SET_NAMES, folder_ood_set, make_ood_sets
from training.screen_samples import (
    SAMPLE_INITS,
    SAMPLE_SEED_OFFSET,
    SampleSetting,
    judged_samples,
    pixel_judge_for,
)

__all__ = ["SCREEN_OOD_SEED", "metrics_table", "register", "run", "screen_model"]

SCREEN_OOD_SEED = 1  # the evaluation report draws its OOD sets with seed 0


def screen_model(
    loaded: LoadedModel,
    dataset: Dataset,
    *,
    seed: int = 0,
    ood_folders: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Validation-only metrics of one model (never reads ``dataset.test``).

    ``ood_folders``: extra OOD sets (name -> folder of images); give validation halves here
    (e.g. the emoji builder's ``ood/val``), never the folders the report is made with.
    """
    model = loaded.model
    x_val, y_val = dataset.val.inputs(), dataset.val.labels
    logits = batched_logits(model, x_val)
    halves = torch.randperm(len(y_val), generator=torch.Generator().manual_seed(seed)).chunk(2)
    calibrated = []
    for fit, held in (halves, halves[::-1]):
        t = fit_temperature(logits[fit], y_val[fit])
        probs = (logits[held] / t).softmax(dim=1)
        calibrated.append(expected_calibration_error(probs, y_val[held], ECE_BINS))
    scores_in = batched_scores(model, x_val)
    ood = {}
    extra = {
        name: folder_ood_set(folder, dataset.spec) for name, folder in (ood_folders or {}).items()
    }
    ood_sets = make_ood_sets(x_val, dataset.spec, seed=SCREEN_OOD_SEED, extra=extra)
    for set_name, x in ood_sets.items():
        scores_out = batched_scores(model, x)
        ood[set_name] = {s: auroc(scores_in[s], scores_out[s]) for s in scores_in}
    return {
        "ref": str(loaded.ref),
        "n": len(y_val),
        "accuracy": accuracy(logits, y_val),
        "ece": expected_calibration_error(logits.softmax(dim=1), y_val, ECE_BINS),
        "ece_calibrated_crossfit": sum(calibrated) / len(calibrated),
        "auroc": ood,
    }


def metrics_table(
    rows: Sequence[Mapping[str, Any]],
    leading: Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]] = (
        ("model", lambda r: str(r["ref"])),
    ),
) -> str:
    """A Markdown table of `screen_model` results: the ``leading`` columns (header, cell of a
    row), then accuracy, ECE and each OOD score's AUROC over the sets of the first row."""
    sets = [s for s in OOD_SET_NAMES if s in rows[0]["auroc"]]
    sets += [s for s in rows[0]["auroc"] if s not in OOD_SET_NAMES]
    head = [h for h, _ in leading] + ["val acc", "ECE raw", "ECE cal. (cross-fit)"]
    head += [f"{score} AUROC ({', '.join(sets)})" for score in OOD_SCORES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [cell(r) for _, cell in leading]
        cells += [
            f"{100 * r['accuracy']:.2f}%",
            f"{100 * r['ece']:.2f}%",
            f"{100 * r['ece_calibrated_crossfit']:.2f}%",
        ]
        for score in OOD_SCORES:
            cells.append(" / ".join(f"{r['auroc'][s][score]:.3f}" for s in sets))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "screen",
        help="compare candidate models on validation data (never the test split)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model references to compare")
    add_model_source_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the validation halves")
    add_ood_folder_argument(p, "; validation-side images here, never the report's folders")
    p.add_argument(
        "--samples",
        type=int,
        nargs="+",
        default=[],
        metavar="STEPS",
        help="also draw class-conditional samples with each number of SGLD steps and report the "
        f"fraction a pixel SVC (fitted on train) judges as their class; seed {SAMPLE_SEED_OFFSET} "
        "+ --seed (the report draws with 0)",
    )
    p.add_argument(
        "--sample-init", choices=SAMPLE_INITS, default="noise", help="where chains start"
    )
    p.add_argument("--sample-step-size", type=float, default=None, help="default: the manifest's")
    p.add_argument("--sample-noise", type=float, default=None, help="default: the manifest's")
    p.add_argument("--per-class", type=int, default=10, help="samples per class (default 10)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    ood_folders = dict(args.ood_folders)
    store = ModelStore(args.store)
    settings = [  # checked before any model is loaded
        SampleSetting(
            steps=steps,
            init=args.sample_init,
            step_size=args.sample_step_size,
            noise_std=args.sample_noise,
            per_class=args.per_class,
        )
        for steps in args.samples
    ]
    rows, sampled = [], []
    for ref in args.models:
        loaded = store.load(ref)
        dataset = dataset_for(loaded.manifest, args.data_root)
        rows.append(screen_model(loaded, dataset, seed=args.seed, ood_folders=ood_folders))
        if settings:
            judge = pixel_judge_for(loaded, dataset)
            for setting in settings:
                result = judged_samples(loaded, judge, setting, SAMPLE_SEED_OFFSET + args.seed)
                sampled.append({"ref": str(loaded.ref), **result})
    print(metrics_table(rows))
    if sampled:
        print()
        print(_samples_table(sampled))
    return 0


def _samples_table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "init", "steps", "step size", "noise", "seed", "n", "judged (pixel SVC)"]
    head += ["roughness", "mean E(x)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["ref"], r["init"], str(r["steps"]), f"{r['step_size']:g}"]
        cells += [f"{r['noise_std']:g}", str(r["seed"]), str(r["n"])]
        cells += [f"{100 * r['svc_pixels']:.2f}%", f"{r['roughness']:.3f}", f"{r['energy']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["screen", *(argv or [])]))
