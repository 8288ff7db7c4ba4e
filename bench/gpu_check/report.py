"""The issue's targets read from one gpu-check result, and the Markdown beside the JSON."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown", "targets"]


def _check(
    name: str, value: float | None, limit: float, *, at_most: bool, unit: str
) -> dict[str, Any]:
    met = None if value is None else (value <= limit if at_most else value >= limit)
    sign = "<=" if at_most else ">="
    return {"target": name, "value": value, "limit": f"{sign} {limit:g} {unit}", "met": met}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 16 with its measured value (None: not measured in this run)."""
    train, raw, served = result["training"], result["raw"], result["served"]
    wrn = train["wrn_k20"]
    best_64 = max(served["predict_64_c1"]["images_per_s"], served["predict_64_c4"]["images_per_s"])
    ratio_64 = best_64 / raw["forward_64_images_per_s"] if raw["forward_64_images_per_s"] else None
    gap_1 = served["predict_1_p50_ms"] - raw["forward_1_p50_ms"]
    gen_ratio = served["generate_s"] / raw["sampler_s"] if raw["sampler_s"] else None
    checks = [
        _check("WRN-28-10 JEM, K=20, batch 64: s/iteration", wrn["seconds_per_iteration"], 0.13,
               at_most=True, unit="s"),
        _check("digits-jem on CUDA: training loop", train["digits"]["loop_s"], 25.0,
               at_most=True, unit="s"),
        _check("served 64-image .npy predict / raw forward images/s",
               None if ratio_64 is None else round(ratio_64, 3), 0.5, at_most=False, unit="x"),
        _check("served 1-image p50 minus raw batch-1 forward p50", round(gap_1, 3), 2.0,
               at_most=True, unit="ms"),
        _check("served generation (64 x 100 steps) / bare sampler",
               None if gen_ratio is None else round(gen_ratio, 3), 1.2, at_most=True, unit="x"),
    ]  # fmt: skip
    if result["dry_run"]:  # tiny models on a CPU: the limits are about an H200
        for check in checks:
            check["met"] = None
    return checks


def markdown(result: dict[str, Any]) -> str:
    env, train, raw, served = result["env"], result["training"], result["raw"], result["served"]
    lines = [
        f"# gpu-check on {env['device_name']} ({result['plan']['device']})",
        "",
        f"`{result['command']}`, {result['date']}, commit {env['commit']} "
        f"(uncommitted changes: {env['git_dirty']}), torch {env['torch']}, "
        f"{result['duration_s']:.0f} s in all.",
        "",
    ]
    if result["dry_run"]:
        lines += ["**CPU dry run with tiny sizes: these numbers measure nothing about a GPU.**", ""]
    lines += ["## Targets", "", "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        if result["dry_run"]:
            met = "dry run: not a measurement"
        lines.append(f"| {t['target']} | {t['value']} | {t['limit']} | {met} |")
    lines += ["", "## Training", "", "| run | iterations | s/iteration | loop s | val acc | "
              "data on device | SGLD graph |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, run in train.items():
        per = run.get("seconds_per_iteration", "")
        lines.append(
            f"| {key} ({run['preset']}) | {run['iterations']} | {per} | {run['loop_s']} | "
            f"{run['val_accuracy']} | {run['data_on_device']} | {run['sgld_cuda_graph']} |"
        )
    lines += ["", "## Serving the WRN (HTTP, uvicorn) beside the raw model", "",
              f"Served on {served['served_on']}; raw model in {result['plan']['precision']}.", "",
              "| what | served | raw |", "|---|---|---|"]  # fmt: skip
    rows = [
        ("1 image, p50 ms", served["predict_1_p50_ms"], raw["forward_1_p50_ms"]),
        ("64 images .npy, images/s (c=1 / c=4)",
         f"{served['predict_64_c1']['images_per_s']} / {served['predict_64_c4']['images_per_s']}",
         raw["forward_64_images_per_s"]),
        ("OOD 64 images .npy, images/s (c=1 / c=4)",
         f"{served['ood_64_c1']['images_per_s']} / {served['ood_64_c4']['images_per_s']}",
         f"{raw['grad_norm_64_images_per_s']} (grad-norm alone)"),
        ("generation, s", served["generate_s"], raw["sampler_s"]),
        ("device memory in use (jem_device_memory_bytes)", served["device_memory_bytes"], ""),
    ]  # fmt: skip
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    tests = result["cuda_tests"]
    lines += ["", f"## Tests marked cuda: {tests['summary']}", ""]
    return "\n".join(lines)
