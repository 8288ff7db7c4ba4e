"""metrics.json -> REPORT.md: the model and its matched baseline side by side, as in the paper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TARGETS_FOR", "data_noun", "render_report", "target_checks"]

_JUDGES = ("svc_pixels", "baseline_net", "all_judges")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _f(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ood_sets(r: dict[str, Any]) -> list[str]:
    first = next(iter(r["ood"].values()))
    return [s for s in first if s != "in_distribution"]


def target_checks(report: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's acceptance targets: (target, measured, met?). None: not measurable here."""
    m = report["results"]["model"]
    b = report["results"].get("baseline")
    checks: list[tuple[str, str, bool | None]] = []
    ece = m["classification"]["ece_calibrated"]
    checks.append(("calibrated ECE <= 1.5%", _pct(ece), ece <= 0.015))
    if b is not None:
        mr, br = m["classification"]["ece"], b["classification"]["ece"]
        checks.append(
            (
                "raw ECE below the baseline's (the paper's claim)",
                f"{_pct(mr)} vs {_pct(br)}",
                mr < br,
            )
        )
    for score, floor in (("energy", 0.99), ("grad_norm", 0.97)):
        sets = _ood_sets(m)
        worst = min(m["ood"][score][s]["auroc"] for s in sets)
        checks.append(
            (f"{score} AUROC >= {floor} on every OOD set", f"min {worst:.4f}", worst >= floor)
        )
        if b is not None:
            beats = all(m["ood"][score][s]["auroc"] > b["ood"][score][s]["auroc"] for s in sets)
            detail = ", ".join(
                f"{s} {m['ood'][score][s]['auroc']:.3f}/{b['ood'][score][s]['auroc']:.3f}"
                for s in sets
            )
            checks.append((f"{score} AUROC above the baseline's on every set", detail, beats))
    if b is not None:
        i = m["robustness"]["linf"]["eps"].index(0.1)
        ma, ba = m["robustness"]["linf"]["accuracy"][i], b["robustness"]["linf"]["accuracy"][i]
        checks.append(
            ("PGD L-inf eps 0.1 accuracy >= baseline's", f"{_pct(ma)} vs {_pct(ba)}", ma >= ba)
        )
    judged = m["samples"]["noise"]["judged_as_label"]
    both = judged.get("all_judges")
    checks.append(
        (
            ">= 90% of noise samples judged as their label by both judges",
            ", ".join(f"{k} {_pct(v)}" for k, v in judged.items()),
            None if b is None else both >= 0.9,
        ),
    )
    q = m["samples"]["noise"].get("quality")
    if q is not None:
        checks.append(
            (
                "sample FID reported beside held-out real images' FID",
                f"{q['fid_samples']:.3f} vs {q['fid_real']:.3f}",
                True,
            )
        )
    return checks


# the data sets whose acceptance targets `target_checks` states (the project's digits issue)
TARGETS_FOR = ("digits",)


def data_noun(name: str) -> str:
    """What the report calls the in-distribution images of data set `name`."""
    return "digits" if name in ("digits", "svhn") else "images"


def render_report(report: dict[str, Any], pngs: Sequence[str], notes: str = "") -> str:
    results = report["results"]
    labels = list(results)
    refs = [results[k]["ref"] for k in labels]
    data = report["data"]
    noun = data_noun(data["name"])
    out = [f"# Evaluation: {' vs '.join(refs)}\n"]
    out.append(
        f"Data: `{data['name']}`, held-out test split of {data['test_n']} images "
        f"(split seed {data['split'].get('seed')}, fingerprint "
        f"`{str(data['split'].get('indices_sha256', ''))[:12]}`). Temperatures and OOD thresholds "
        "were fitted on the validation split only. Seed for OOD sets, PGD starts and SGLD: "
        f"{report['seed']}.\n"
    )
    if report.get("command"):
        out.append(f"Command: `{report['command']}`\n")

    out.append("## Acceptance targets\n")
    if data["name"] in TARGETS_FOR:
        out.append(
            _table(
                ["target", "measured", "met"],
                [
                    [t, v, {True: "yes", False: "**no**", None: "n/a"}[ok]]
                    for t, v, ok in target_checks(report)
                ],
            )
        )
    else:
        out.append(
            f"None: the targets this project set are for the `{', '.join(TARGETS_FOR)}` data "
            f"set; `{data['name']}` has none, so the numbers below stand on their own.\n"
        )

    out.append("## Classification and calibration (test split)\n")
    rows = []
    for key, name, fmt in (
        ("accuracy", "accuracy", _pct),
        ("ece", "ECE, raw (15 bins)", _pct),
        ("ece_calibrated", "ECE, temperature-scaled", _pct),
        ("temperature", "temperature T (fitted on validation)", _f),
        ("nll", "NLL, raw", _f),
        ("nll_calibrated", "NLL, temperature-scaled", _f),
        ("mean_confidence", "mean confidence, raw", _pct),
    ):
        cells = []
        for k in labels:
            c = results[k]["classification"]
            ci = c.get(f"{key}_ci95")
            cells.append(fmt(c[key]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""))
        rows.append([name, *cells])
    out.append(_table(["metric", *refs], rows))
    out.append(
        "ECE in brackets: 95% bias-corrected (basic) bootstrap interval over the test split "
        "(1000 resamples; training/eval_metrics.py, `bootstrap_interval`). ECE is biased upward, "
        "resampled ECE more so: the interval reflects the resamples about the point estimate, "
        "which removes that bias, so it can lie below the point estimate.\n"
    )

    out.append("## Out-of-distribution detection (test split vs each OOD set)\n")
    out.append(
        f"Each generated OOD set has {report['ood_sets']['n']} images"
        + "".join(
            f"; `{name}` is the {report['ood_sets']['sizes'][name]} images of `{folder}`"
            for name, folder in report["ood_sets"].get("folders", {}).items()
        )
        + ". AUROC: OOD is the positive class. "
        "FPR@95: fraction of the OOD set accepted at the threshold accepting 95% of the test "
        f"{noun} (lower is better). Flagged: fraction above the stored validation threshold.\n"
    )
    for skipped, why in report["ood_sets"].get("skipped", {}).items():
        out.append(f"- `{skipped}` skipped: {why}\n")
    rows = []
    for score in results[labels[0]]["ood"]:
        for s in _ood_sets(results[labels[0]]):
            cells = []
            for k in labels:
                e = results[k]["ood"][score][s]
                cells.append(f"{e['auroc']:.4f} / {_pct(e['fpr95'])} / {_pct(e.get('flagged'))}")
            rows.append([score, s, *cells])
        flagged = [_pct(results[k]["ood"][score]["in_distribution"]["flagged"]) for k in labels]
        rows.append([score, f"test {noun} flagged", *flagged])
    out.append(
        _table(["score", "OOD set", *(f"{r}: AUROC / FPR@95 / flagged" for r in refs)], rows)
    )

    out.append("## Robustness: accuracy under PGD (test split)\n")
    rob = results[labels[0]]["robustness"]
    out.append(
        f"{rob['steps']} steps of size 2.5 eps / steps from a seeded random start; "
        "inputs in [-1, 1].\n"
    )
    rows = []
    for norm in ("linf", "l2"):
        for i, eps in enumerate(rob[norm]["eps"]):
            rows.append(
                [
                    norm,
                    f"{eps:g}",
                    *(_pct(results[k]["robustness"][norm]["accuracy"][i]) for k in labels),
                ]
            )
    out.append(_table(["norm", "eps", *refs], rows))

    out.append("## Class-conditional samples\n")
    j = report["judges"]
    out.append(
        "Judges: an RBF SVC on pixels fitted on what the model was trained on, "
        f"`{j['svc_pixels']['fitted_on']['split']}` "
        f"({j['svc_pixels']['fitted_on']['n']} images; "
        f"{_pct(j['svc_pixels']['test_accuracy'])} test accuracy) and the baseline network "
        f"`{(j.get('baseline_net') or {}).get('ref', 'none')}` (for the baseline's own samples it "
        "judges itself, so only the SVC is independent there). IS and FID are computed in the "
        f"feature space of `{j.get('feature_space')}`; the real-{noun[:-1]} row is the "
        "validation split against the test split: the best a generator can reach with this "
        "many images.\n"
    )
    own = j.get("svc_pixels_data_set_only")
    if own is not None:
        judged_own = ", ".join(
            f"`{results[k]['ref']}` {source} {_pct(e.get('svc_pixels_data_set_only'))}"
            for k in labels
            for source, e in results[k]["samples"].items()
        )
        out.append(
            "The same SVC fitted on the data set's own train split only (the judge of earlier "
            f"reports; {own['fitted_on']['n']} images, {_pct(own['test_accuracy'])} test "
            f"accuracy) reads as their label: {judged_own}.\n"
        )
    rows = []
    for k in labels:
        for source, e in results[k]["samples"].items():
            q = e.get("quality") or {}
            judged = [_pct(e["judged_as_label"].get(n)) for n in _JUDGES]
            quality = [_f(q.get("is_samples"), 2), _f(q.get("fid_samples"), 3)]
            source_cell = f"{source} ({e['sgld']['steps']} steps)"
            rows.append([results[k]["ref"], source_cell, str(e["n"]), *judged, *quality])
    q0 = next(iter(results[labels[0]]["samples"].values())).get("quality") or {}
    rows.append(
        [
            f"real {noun} (validation)",
            "",
            str(q0.get("n_real", "")),
            "",
            "",
            "",
            _f(q0.get("is_real"), 2),
            _f(q0.get("fid_real"), 3),
        ]
    )
    out.append(
        _table(["model", "source", "n", "SVC", "baseline net", "both", "IS", "FID to test"], rows)
    )

    out.append("## Figures\n")
    for png in pngs:
        out.append(f"![{png}]({png})\n")
    if notes:
        out.append("## Discussion\n")
        out.append(notes.strip() + "\n")
    return "\n".join(out)
