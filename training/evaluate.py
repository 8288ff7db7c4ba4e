"""`python -m training evaluate MODEL [--against BASELINE]`: the paper's claims, measured.

On the held-out test split, for the model and (side by side) for the matched softmax baseline:
classification and calibration (accuracy, ECE raw and temperature-scaled, NLL), OOD detection
(AUROC and FPR@95 of each score against each OOD set), robustness (accuracy under L-inf and L2
PGD), and class-conditional samples (judged by the baseline network and a pixel SVC fitted on the
train split; IS and FID in the baseline's feature space). Writes metrics.json, the PNGs and
REPORT.md to --out. Every fitted number comes from the train or validation split; every random
draw comes from a generator seeded with --seed, recorded in metrics.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model_store import LoadedModel, ModelStore
from training.attacks import Norm, robust_accuracy
from training.calibrate import fit_calibration
from training.data import Dataset
from training.eval_metrics import (
    batched_logits,
    batched_scores,
    classification_metrics,
    dataset_for,
    ood_metrics,
)
from training.eval_plots import reliability_png, robustness_png, score_histograms_png
from training.eval_samples import (
    NOISE_STEPS,
    Samples,
    generation_quality,
    judge,
    samples_from_buffer,
    samples_from_noise,
)
from training.eval_vision import extra_ood_sets, inception_metrics
from training.judges import PixelSVCJudge, fit_pixel_judge, network_predictions
from training.ood_sets import folder_ood_set, make_ood_sets
from training.report import render_report
from training.samples import class_grid_png

__all__ = ["L2_EPS", "LINF_EPS", "evaluate", "evaluate_model"]

LINF_EPS = (0.0, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3)
L2_EPS = (0.0, 0.25, 0.5, 1.0, 2.0)


def evaluate_model(
    loaded: LoadedModel,
    dataset: Dataset,
    *,
    ood_sets: dict[str, Tensor],
    judges: dict[str, Callable[[Tensor], Tensor]],
    feature_net: nn.Module | None,
    seed: int,
    per_class: int,
    pgd_steps: int,
    sgld_steps: int = NOISE_STEPS,
    linf_eps: tuple[float, ...] = LINF_EPS,
    l2_eps: tuple[float, ...] = L2_EPS,
) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]], dict[str, Samples]]:
    """(metrics, scores[score][set] for the histograms, samples by source) for one model."""
    model, manifest = loaded.model, loaded.manifest
    x_val, y_val = dataset.val.inputs(), dataset.val.labels
    x_test, y_test = dataset.test.inputs(), dataset.test.labels
    calibration, source = manifest.calibration, "manifest"
    if calibration is None:  # not calibrated yet: fit on validation now, never on test
        calibration, source = fit_calibration(model, x_val, y_val, split_seed=None), "fitted now"
    t = calibration.temperature
    cls = classification_metrics(batched_logits(model, x_test), y_test, t)

    scores_in = batched_scores(model, x_test, t)
    scores_out = {name: batched_scores(model, x, t) for name, x in ood_sets.items()}
    thresholds = {name: c.threshold for name, c in calibration.scores.items()}
    by_score = {
        s: {"test": scores_in[s], **{n: v[s] for n, v in scores_out.items()}} for s in scores_in
    }

    robustness: dict[str, Any] = {"steps": pgd_steps, "seed": seed}
    attacks: tuple[tuple[Norm, tuple[float, ...]], ...] = (("linf", linf_eps), ("l2", l2_eps))
    for norm, epsilons in attacks:
        acc = robust_accuracy(
            model, x_test, y_test, epsilons, norm=norm, steps=pgd_steps, seed=seed
        )
        robustness[norm] = {"eps": list(epsilons), "accuracy": acc}

    samples = {"noise": samples_from_noise(model, manifest, per_class, seed, sgld_steps)}
    if loaded.buffer is not None:
        samples["buffer"] = samples_from_buffer(model, manifest, loaded.buffer, per_class, seed)
    sample_metrics: dict[str, Any] = {}
    for name, s in samples.items():
        entry: dict[str, Any] = {
            "n": len(s.y),
            "sgld": s.config,
            "judged_as_label": judge(s, judges),
        }
        if feature_net is not None:
            entry["quality"] = generation_quality(feature_net, s.x, x_val, x_test)
        entry["inception"] = inception_metrics(s.x, x_test, dataset.spec)
        sample_metrics[name] = entry

    metrics = {
        "ref": str(loaded.ref),
        "px_weight": manifest.training.get("config", {}).get("px_weight"),  # type: ignore[union-attr]
        "calibration": {
            "source": source,
            "temperature": t,
            "fitted_on": calibration.fitted_on.model_dump(),
            "thresholds": thresholds,
        },
        "classification": cls,
        "ood": ood_metrics(scores_in, scores_out, thresholds),
        "robustness": robustness,
        "samples": sample_metrics,
    }
    return metrics, by_score, samples


def evaluate(
    store: ModelStore,
    ref: str,
    *,
    against: str | None = None,
    out: Path | None = None,
    seed: int = 0,
    per_class: int | None = None,
    sgld_steps: int = NOISE_STEPS,
    pgd_steps: int = 20,
    linf_eps: tuple[float, ...] = LINF_EPS,
    l2_eps: tuple[float, ...] = L2_EPS,
    data_root: str | None = None,
    ood_folders: Mapping[str, Path] | None = None,
    notes: str = "",
    command: str = "",
) -> dict[str, Any]:
    """Evaluate `ref` (and `against`) on the test split; `ood_folders` adds OOD sets of the
    user's own images (name -> folder, read recursively, converted per the model's input spec)."""
    torch.manual_seed(seed)
    main = store.load(ref)
    baseline = store.load(against) if against else None
    dataset = dataset_for(main.manifest, data_root)
    if baseline is not None:
        # raises SplitMismatch unless the baseline held out exactly the same test split
        other = dataset_for(baseline.manifest, data_root)
        if other.split.get("indices_sha256") != dataset.split.get("indices_sha256"):
            raise ValueError(f"{ref} and {against} were trained on different splits")
    x_test, y_test = dataset.test.inputs(), dataset.test.labels
    per_class = per_class or max(1, len(y_test) // dataset.num_classes)

    # the pixel judge learns what the judged model learned (training.judges)
    split = main.manifest.training.get("split")
    svc = fit_pixel_judge(dataset, split if isinstance(split, dict) else None, seed=seed)
    grown = svc.fitted_on is not None and svc.fitted_on["split"] != "train"
    judges: dict[str, Callable[[Tensor], Tensor]] = {"svc_pixels": svc.predict}
    # and the judge as it was before, on the data set's own train split, reported beside it
    own = None
    if grown:
        own = PixelSVCJudge().fit(dataset.train.inputs(), dataset.train.labels, split="train")
    if baseline is not None:
        judges["baseline_net"] = lambda x: network_predictions(baseline.model, x)
    extra, skipped = extra_ood_sets(dataset, data_root, seed)
    for name, folder in (ood_folders or {}).items():
        extra[name] = folder_ood_set(folder, dataset.spec)
    ood_sets = make_ood_sets(x_test, dataset.spec, seed=seed, extra=extra)
    feature_net = baseline.model if baseline is not None else None

    results: dict[str, Any] = {}
    scores: dict[str, dict[str, dict[str, Tensor]]] = {}
    samples: dict[str, dict[str, Samples]] = {}
    for label, loaded in (("model", main), ("baseline", baseline)):
        if loaded is None:
            continue
        results[label], scores[label], samples[label] = evaluate_model(
            loaded,
            dataset,
            ood_sets=ood_sets,
            judges=judges,
            feature_net=feature_net,
            seed=seed,
            per_class=per_class,
            pgd_steps=pgd_steps,
            sgld_steps=sgld_steps,
            linf_eps=linf_eps,
            l2_eps=l2_eps,
        )

    if own is not None:
        for label in results:
            for source, s in samples[label].items():
                hits = (own.predict(s.x) == s.y).float().mean()
                results[label]["samples"][source]["svc_pixels_data_set_only"] = float(hits)

    report: dict[str, Any] = {
        "command": command,
        "seed": seed,
        "data": {"name": dataset.name, "split": dataset.split, "test_n": len(y_test)},
        "ood_sets": {
            "names": list(ood_sets),
            "n": len(x_test),
            "sizes": {name: len(x) for name, x in ood_sets.items()},
            "folders": {name: str(folder) for name, folder in (ood_folders or {}).items()},
            "seed": seed,
            "skipped": skipped,
        },
        "judges": {
            "svc_pixels": {
                "fitted_on": svc.fitted_on,
                "test_accuracy": float((svc.predict(x_test) == y_test).float().mean()),
            },
            "svc_pixels_data_set_only": None
            if own is None
            else {
                "fitted_on": own.fitted_on,
                "test_accuracy": float((own.predict(x_test) == y_test).float().mean()),
            },
            "baseline_net": {"ref": str(baseline.ref)} if baseline is not None else None,
            "feature_space": str(baseline.ref) if baseline is not None else None,
        },
        "results": results,
    }
    if out is not None:
        _write(out, report, scores, samples, notes, dataset.class_names)
    return report


def _write(
    out: Path,
    report: dict[str, Any],
    scores: dict[str, dict[str, dict[str, Tensor]]],
    samples: dict[str, dict[str, Samples]],
    notes: str,
    class_names: Sequence[str],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = {label: r["ref"].partition(":")[0] for label, r in report["results"].items()}
    pngs = {
        "reliability.png": reliability_png(
            {names[k]: r["classification"] for k, r in report["results"].items()}
        ),
        "ood_scores.png": score_histograms_png({names[k]: v for k, v in scores.items()}),
        "robustness.png": robustness_png(
            {
                names[k]: {n: r["robustness"][n] for n in ("linf", "l2")}
                for k, r in report["results"].items()
            }
        ),
    }
    for label, per_source in samples.items():
        for source, s in per_source.items():
            # up to 10 chains per class, one labelled row per class
            png = class_grid_png(s.x, s.y, class_names)
            pngs[f"samples_{names[label]}_{source}.png"] = png
    for filename, data in pngs.items():
        (out / filename).write_bytes(data)
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "REPORT.md").write_text(render_report(report, sorted(pngs), notes))
