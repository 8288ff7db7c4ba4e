"""The Markdown tables of one run (a function of its JSON alone)."""

from __future__ import annotations

from typing import Any

from bench.targets import Target

__all__ = ["markdown"]


def _verdict(ok: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "not run"}[ok]


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


_BODIES = {
    "pixels": " (JSON pixels)",
    "npy": " (.npy)",
    "v2-png": " (v2 REST, binary: PNG files)",
    "v2-uint8": " (v2 REST, binary: UINT8 pixels)",
    "grpc-png": " (v2 gRPC: PNG files)",
    "grpc-uint8": " (v2 gRPC: UINT8 pixels)",
}


def _serving_table(results: dict[str, Any]) -> list[str]:
    rows = results["serving"]["rows"]
    name = results["model"]["ref"].split(":")[0]
    noop = {
        r["concurrency"]: r for r in rows if r["path"] == f"/bench/noop/{name}" and r["images"] == 1
    }
    lines = [
        _row(
            "server",
            "endpoint",
            "images/req",
            "conc",
            "req/s",
            "images/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s vs no-op",
            "server CPU ms/req",
            "CPU server / client",
            "errors",
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = noop.get(r["concurrency"]) if r["images"] == 1 else None
        ratio = f"{r['requests_per_s'] / ref['requests_per_s']:.0%}" if ref else "-"
        path = r["path"].replace(f"/v1/models/{name}", "…").replace(f"/{name}", "/…")
        if path.startswith("grpc://"):
            path = "ModelInfer"
        path = f"`{path}`" + _BODIES.get(r["body"], "")
        lines.append(
            _row(
                r["server"],
                path,
                r["images"],
                r["concurrency"],
                _fmt(r["requests_per_s"]),
                _fmt(r["images_per_s"], 0),
                _fmt(r["p50_ms"], 2),
                _fmt(r["p95_ms"], 2),
                _fmt(r["p99_ms"], 2),
                ratio,
                _fmt(r["server_cpu_ms_per_request"], 2),
                f"{r['server_cpu']:.2f} / {r['client_cpu']:.2f}",
                r["errors"],
            )
        )
    mem = results["serving"]["memory"]
    lines += ["", "Peak RSS of the service process under load (psutil, sampled every 50 ms):", ""]
    lines += [f"- {k}: {v['peak_mb']} MB peak ({v['idle_mb']} MB idle)" for k, v in mem.items()]
    return lines


def _compute_table(c: dict[str, Any]) -> list[str]:
    lines = [
        f"## Compute, in-process (batch {c['batch']})",
        "",
        "| path | images/s (median) | best round |",
        "|---|---:|---:|",
    ]
    for key, label in [
        ("forward_images_per_s", "raw forward, inference_mode (the ceiling)"),
        ("classify_images_per_s", "forward + softmax"),
        ("grad_norm_images_per_s", "grad-norm score (forward + input gradient)"),
        ("classify_batch1_images_per_s", "forward + softmax, batch 1"),
    ]:
        lines.append(_row(label, _fmt(c[key]["per_s"], 0), _fmt(c[key]["best_per_s"], 0)))
    ratio = c["grad_norm_cost_ratio"]
    lines += ["", f"In-process, grad-norm costs {ratio:.2f}x forward + softmax per image."]
    return lines


def _generation_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "## Generation (SGLD steps/s)",
        "",
        "Relative: the median of round-by-round ratios (the runs are interleaved).",
        "",
        "| sampler | steps/s (median) | relative |",
        "|---|---:|---:|",
    ]
    s = results.get("samplers")
    if s:
        ref = s["reference_steps_per_s"]["per_s"]
        back = s["backward_steps_per_s"]["per_s"]
        bare = s["bare_steps_per_s"]["per_s"]
        b = s["batch"]
        lines.append(_row(f"official-JEM-style loop, NCHW model, batch {b}", _fmt(ref), "1.00"))
        rel_bare = s["bare_over_reference"]
        rel_back = rel_bare / s["bare_over_backward"]
        same = s.get("reference_same_layout_steps_per_s")
        if same:
            rel_same = rel_bare / s["bare_over_reference_same_layout"]
            lines.append(
                _row(
                    f"official-JEM-style loop, our channels-last model, batch {b}",
                    _fmt(same["per_s"]),
                    f"{rel_same:.2f}",
                )
            )
        lines.append(
            _row(f"`.backward()` loop, NCHW model, batch {b}", _fmt(back), f"{rel_back:.2f}")
        )
        lines.append(_row(f"`jem.sgld_sample`, batch {b}", _fmt(bare), f"{rel_bare:.2f}"))
    if "serving" in results:
        g = results["serving"]["generation"]
        n, steps = g["samples"], g["steps"]
        lines.append(
            _row(f"`jem.sgld_sample`, {n} x {steps} steps", _fmt(g["bare_steps_per_s"]), "1.00")
        )
        speed = 1 / (1 + g["service_overhead"])
        lines.append(
            _row(
                f"service `/generate`, {n} x {steps} steps",
                _fmt(g["service_steps_per_s"]),
                f"{speed:.2f}",
            )
        )
    return lines


def _training_table(t: dict[str, Any]) -> list[str]:
    lines = [
        "## Training (digits preset, `training.Trainer`)",
        "",
        "| SGLD steps | ms / iteration | vs baseline |",
        "|---:|---:|---:|",
    ]
    for e in t["seconds_per_iteration"].values():
        ms = e["seconds_per_iteration"] * 1000
        lines.append(_row(e["sgld_steps"], f"{ms:.1f}", e.get("relative_to_baseline", "-")))
    for tta in t["time_to_accuracy"]:
        if tta["reached"]:
            where = f"{tta['seconds']:.1f} s ({tta['iterations']} iterations)"
        else:
            where = (
                f"not reached within {tta['cap_s']:.0f} s ({tta['iterations_run']} iterations, "
                f"best {tta['best_test_accuracy'] or 0:.1%})"
            )
        lines += [
            "",
            f"`{tta['preset']}` to {tta['target']:.0%} test accuracy: {where}; test accuracy "
            f"read every {tta['evaluated_every']} iterations, evaluation off the clock.",
        ]
    return lines


def markdown(results: dict[str, Any], targets: list[Target]) -> str:
    env = results["environment"]
    load = f"{env['load_before'][0]:.2f} before, {env['load_after'][0]:.2f} after"
    lines = [
        f"# Benchmark results ({'quick' if results['quick'] else 'full'} run)",
        "",
        f"{results['started_at']} · model `{results['model']['ref']}` "
        f"({results['model']['origin']}) · {env['cpu_count']} CPUs · load average {load} · "
        f"torch threads {results['plan']['threads']} · torch {env['torch']} · "
        f"seed {results['seed']} · {results['duration_s']:.0f} s",
        "",
        "## Targets",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [_row(t.name, t.goal, t.measured, _verdict(t.passed)) for t in targets]
    trained = results["model"].get("trained") or {}
    if trained.get("duration_s") is not None:
        acc = trained.get("test_accuracy")
        lines += [
            "",
            f"The measured model's own training run (from its manifest): {trained['step']} "
            f"iterations in {trained['duration_s']} s"
            + (f", test accuracy {acc:.1%}." if isinstance(acc, float) else "."),
        ]
    if "serving" in results:
        lines += ["", "## Serving (loopback, real uvicorn processes)", ""]
        lines += _serving_table(results)
    if "compute" in results:
        lines += ["", *_compute_table(results["compute"])]
    if "samplers" in results or "serving" in results:
        lines += ["", *_generation_table(results)]
    if "training" in results:
        lines += ["", *_training_table(results["training"])]
    return "\n".join(lines) + "\n"
