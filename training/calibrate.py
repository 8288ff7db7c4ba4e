"""`python -m training calibrate MODEL`: what the service needs to turn scores into decisions.

Fitted on the validation split only:
- the softmax temperature T minimising validation NLL (Guo et al., 2017);
- for each OOD score the threshold that lets 95% of validation inputs pass, and the 0..100th
  percentiles of the validation scores (the service reports an input's percentile);
then measured on the test split (accuracy, ECE and NLL raw and calibrated, OOD AUROC / FPR@95 and
the flag rate at the stored thresholds), and published as a new version whose parent is the
calibrated one. The test split never influences a fitted number: it is only read afterwards.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from jem import JEM
from jem.metrics import fit_temperature
from jem.normalize import NORMALIZATIONS
from jem.ood import OOD_SCORES
from model_store import (
    Calibration,
    FittedOn,
    InputSpecEntry,
    Manifest,
    ManifestDraft,
    ModelRef,
    ModelStore,
    ScoreCalibration,
)
from training.cli import add_model_source_args, set_threads
from training.data import Dataset
from training.eval_metrics import (
    batched_logits,
    batched_scores,
    classification_metrics,
    dataset_for,
    ood_metrics,
)
from training.ood_sets import make_ood_sets

__all__ = [
    "TARGET_TPR",
    "calibrate",
    "fit_calibration",
    "is_calibrated",
    "main",
    "measure_on_test",
    "run",
]

TARGET_TPR = 0.95
SMALL_VALIDATION = 100  # fewer validation images than this: `calibrate` says the fit is noisy
# Files of a version that a recalibrated version does not inherit: the store writes these two
# itself, and the optimiser state belongs to the training checkpoint (the parent keeps it).
# Everything else (the replay buffer, samples.png...) is hard-linked from the parent.
_NOT_INHERITED = ("manifest.json", "weights.safetensors")


def fit_calibration(
    model: JEM, x_val: Tensor, y_val: Tensor, *, split_seed: int | None, split: str = "validation"
) -> Calibration:
    """Temperature, thresholds and quantiles from held-out validation data alone."""
    if split == "test":
        raise ValueError("calibration is fitted on the validation split, never on the test split")
    temperature = fit_temperature(batched_logits(model, x_val), y_val)
    # max_softmax is scored with the fitted temperature, as the service will score it
    scores = batched_scores(model, x_val, temperature)
    return Calibration(
        temperature=temperature,
        fitted_on=FittedOn(split=split, n=len(y_val), seed=split_seed),
        scores={
            name: ScoreCalibration.from_scores(scores[name].tolist(), TARGET_TPR)
            for name in OOD_SCORES
        },
    )


def measure_on_test(
    model: JEM,
    calibration: Calibration,
    dataset: Dataset,
    *,
    ood_seed: int = 0,
    ood_sets: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Test-split metrics under a given calibration (nothing here is fitted)."""
    x_test, y_test = dataset.test.inputs(), dataset.test.labels
    cls = classification_metrics(batched_logits(model, x_test), y_test, calibration.temperature)
    sets = ood_sets if ood_sets is not None else make_ood_sets(x_test, dataset.spec, seed=ood_seed)
    t = calibration.temperature
    scores_out = {name: batched_scores(model, x, t) for name, x in sets.items()}
    thresholds = {name: c.threshold for name, c in calibration.scores.items()}
    ood = ood_metrics(batched_scores(model, x_test, t), scores_out, thresholds)
    summary = {k: v for k, v in cls.items() if not k.startswith("reliability")}
    return {"split": "test", **summary, "ood_seed": ood_seed, "ood": ood}


def calibrate(
    store: ModelStore,
    ref: str | ModelRef,
    *,
    data_root: str | None = None,
    ood_seed: int = 0,
    normalization: str | None = None,
) -> tuple[ModelRef, Manifest]:
    """Fit on validation, measure on test, publish `name:<next>` with parent = `ref`.

    `normalization`: the new version adopts this input normalisation (e.g. "digits-v1" for a
    model trained on scikit-learn's digits, which are that normalisation's output); the test
    figures are measured with it. None keeps the parent's.
    """
    loaded = store.load(ref)
    model, manifest = loaded.model, loaded.manifest
    if normalization is not None:
        spec = {**manifest.input_spec.model_dump(), "normalization": normalization}
        manifest = manifest.model_copy(update={"input_spec": InputSpecEntry.model_validate(spec)})
    torch.manual_seed(0)  # nothing below draws from the global RNG; pin it anyway
    dataset = dataset_for(manifest, data_root)
    split_seed = dataset.split.get("seed")
    calibration = fit_calibration(
        model,
        dataset.val.inputs(),
        dataset.val.labels,
        split_seed=split_seed if isinstance(split_seed, int) else None,
    )
    metrics = dict(manifest.metrics)
    test = measure_on_test(model, calibration, dataset, ood_seed=ood_seed)
    # the raw classifier's test accuracy, read as the manifest's summary (service /v1/models, page)
    metrics["test"], metrics["test_accuracy"] = test, test["accuracy"]
    draft = ManifestDraft.from_manifest(
        manifest, calibration=calibration, metrics=metrics, parent=str(loaded.ref), stage="final"
    )
    # the replay buffer, sample grids and other files are unchanged: hard links, not copies
    linked = {
        filename: loaded.ref
        for filename in manifest.files
        if filename not in _NOT_INHERITED and not filename.startswith("training_state")
    }
    new_ref = store.save(manifest.name, model, draft, linked=linked)
    return new_ref, store.manifest(new_ref)


def is_calibrated(manifest: Manifest, normalization: str | None = None) -> bool:
    """Whether `manifest` carries a calibration that `calibrate(..., normalization=...)` would
    only fit again: it has one, and its input normalisation is `normalization` (None: any)."""
    if manifest.calibration is None:
        return False
    return normalization is None or manifest.input_spec.normalization == normalization


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate", help="fit temperature and OOD thresholds on validation", description=__doc__
    )
    p.add_argument("model", help="model reference: name, name:VERSION or name:ALIAS")
    add_model_source_args(p)
    p.add_argument("--ood-seed", type=int, default=0, help="seed of the OOD test sets")
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        help="publish the new version with this input normalisation (default: the parent's)",
    )
    p.add_argument(
        "--skip-calibrated",
        action="store_true",
        help="publish nothing when MODEL is calibrated already (with the --normalization asked "
        "for, if any): re-running `make evaluate-*` evaluates the calibrated version as it is",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    store = ModelStore(args.store)
    if args.skip_calibrated:
        ref = store.resolve(args.model)
        current = store.manifest(ref)
        if is_calibrated(current, args.normalization):
            assert current.calibration is not None
            print(
                f"{ref} is calibrated already (temperature {current.calibration.temperature:.4f}, "
                f"fitted on {current.calibration.fitted_on.split}); nothing published"
            )
            return 0
    new_ref, manifest = calibrate(
        store,
        args.model,
        data_root=args.data_root,
        ood_seed=args.ood_seed,
        normalization=args.normalization,
    )
    cal, test = manifest.calibration, manifest.metrics["test"]
    assert cal is not None
    assert isinstance(test, dict)
    print(f"calibrated {manifest.parent} -> {new_ref} ({store.path(new_ref)})")
    print(
        f"  temperature {cal.temperature:.4f} fitted on {cal.fitted_on.split} (n={cal.fitted_on.n})"
    )
    if cal.fitted_on.n < SMALL_VALIDATION:
        print(
            f"  warning: {cal.fitted_on.n} validation images are few: the temperature and the "
            "thresholds are noisy (the calibrated ECE can exceed the raw one, a threshold can "
            "flag well over 5% of genuine images); more images give a steadier fit"
        )
    for name, score in cal.scores.items():
        print(f"  {name:12s} threshold {score.threshold:.5g} (lets {score.target_tpr:.0%} pass)")
    for name, score in cal.scores.items():
        if score.threshold <= score.quantiles[0]:  # the target share tie at the lowest score
            print(
                f"  warning: {name}: {score.target_tpr:.0%} or more of the validation images "
                f"share its lowest score ({score.quantiles[0]:.3g}), so its threshold separates "
                "nothing: any image scoring above that is flagged. The model is saturated on "
                "its validation images (a short or over-confident run, few images): train "
                "longer on more images, or do not rely on this score's verdict"
            )
    print(
        f"  test: accuracy {test['accuracy']:.4f}, ECE {test['ece']:.4f} raw / "
        f"{test['ece_calibrated']:.4f} calibrated"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["calibrate", *(argv or [])]))
