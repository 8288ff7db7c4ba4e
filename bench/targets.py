"""The targets of issue 9, checked against one run's measurements."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Target", "check_targets", "find_row"]


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    passed: bool | None  # None: not measured in this run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_row(
    rows: list[dict[str, Any]],
    server: str,
    path: str,
    images: int,
    concurrency: int,
    body: str = "multipart",
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["server"] == server
            and row["path"] == path
            and row["images"] == images
            and row["concurrency"] == concurrency
            and row["body"] == body
        ):
            return row
    return None


def _cpu_ratio(slow: dict[str, Any], fast: dict[str, Any], *, percent: bool = False) -> str:
    """How many times `fast`'s server CPU per request fits in `slow`'s (the same as a throughput
    ratio when the server is CPU-bound), with both costs."""
    a, b = slow["server_cpu_ms_per_request"], fast["server_cpu_ms_per_request"]
    if percent:
        return f"{b / a:.0%} ({a:.2f} vs {b:.2f} ms)"
    return f"{a / b:.2f}x ({a:.2f} vs {b:.2f} ms)"


def check_targets(results: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []
    serving = results.get("serving")
    compute = results.get("compute")
    name = results["model"]["ref"].split(":")[0]
    predict = f"/v1/models/{name}/predict"
    if serving:
        rows = serving["rows"]
        top = max(results["plan"]["serving"]["concurrencies"])
        batch_cs = results["plan"]["serving"]["batch_concurrencies"]
        n = results["plan"]["serving"]["batch_images"]
        b = find_row(rows, "batched", predict, 1, top)
        u = find_row(rows, "unbatched", predict, 1, top)
        noop = find_row(rows, "bench-app", f"/bench/noop/{name}", 1, top)
        b1 = find_row(rows, "batched", predict, 1, 1)
        noop1 = find_row(rows, "bench-app", f"/bench/noop/{name}", 1, 1)
        if b and u:
            r = b["requests_per_s"] / u["requests_per_s"]
            targets.append(
                Target(
                    f"batched vs unbatched throughput, concurrency {top}",
                    ">= 3x",
                    f"{r:.2f}x ({b['requests_per_s']:.0f} vs {u['requests_per_s']:.0f} req/s); "
                    f"by server CPU per request: {_cpu_ratio(u, b)}",
                    r >= 3.0,
                )
            )
        if b and noop:
            r = b["requests_per_s"] / noop["requests_per_s"]
            targets.append(
                Target(
                    f"batched vs no-op throughput, concurrency {top}",
                    ">= 60%",
                    f"{r:.0%} ({b['requests_per_s']:.0f} vs {noop['requests_per_s']:.0f} req/s); "
                    f"by server CPU per request: {_cpu_ratio(b, noop, percent=True)}",
                    r >= 0.6,
                )
            )
        if b1 and noop1:
            d = b1["p99_ms"] - noop1["p99_ms"]
            targets.append(
                Target(
                    "p99 at concurrency 1, predict minus no-op",
                    "<= 2 ms",
                    f"{d:+.2f} ms ({b1['p99_ms']:.2f} vs {noop1['p99_ms']:.2f} ms)",
                    d <= 2.0,
                )
            )
        best_by_body = {}
        for body in ("multipart", "pixels", "npy"):
            found = [find_row(rows, "batched", predict, n, c, body) for c in batch_cs]
            best_row = max((r for r in found if r), key=lambda r: r["images_per_s"], default=None)
            if best_row:
                best_by_body[body] = best_row
        if best_by_body and compute:
            ceiling = compute["forward_images_per_s"]["per_s"]
            label = {"multipart": "PNG uploads", "pixels": "JSON pixels", "npy": ".npy array"}
            parts = [
                f"{label[body]} {r['images_per_s'] / ceiling:.1%} ({r['images_per_s']:.0f} at "
                f"c={r['concurrency']})"
                for body, r in best_by_body.items()
            ]
            best_share = max(r["images_per_s"] for r in best_by_body.values()) / ceiling
            targets.append(
                Target(
                    f"{n}-image requests vs raw batched forward (images/s), best input format",
                    ">= 50%",
                    f"{'; '.join(parts)}; raw forward {ceiling:.0f} images/s",
                    best_share >= 0.5,
                )
            )
        c = max(batch_cs)
        plain = find_row(rows, "batched", predict, n, c)
        full = find_row(rows, "batched", predict + "?ood=full", n, c)
        if plain and full:
            r = plain["images_per_s"] / full["images_per_s"]
            targets.append(
                Target(
                    "grad-norm (?ood=full) cost per image vs plain predict (service)",
                    "<= 3x",
                    f"{r:.2f}x ({full['images_per_s']:.0f} vs {plain['images_per_s']:.0f} "
                    f"images/s, {n}-image requests, c={c})",
                    r <= 3.0,
                )
            )
        gen = serving["generation"]
        targets.append(
            Target(
                "service generation overhead over the bare sampler",
                "< 10%",
                f"{gen['service_overhead']:+.1%} ({gen['service_steps_per_s']:.0f} vs "
                f"{gen['bare_steps_per_s']:.0f} steps/s, batch {gen['samples']})",
                gen["service_overhead"] < 0.10,
            )
        )
    samplers = results.get("samplers")
    if samplers:
        r = samplers["bare_over_reference"]
        targets.append(
            Target(
                "bare sampler vs official-JEM-style loop (steps/s)",
                ">= 1.2x",
                f"{r:.2f}x ({samplers['bare_steps_per_s']['per_s']:.0f} vs "
                f"{samplers['reference_steps_per_s']['per_s']:.0f} steps/s, the loop on the "
                "NCHW model it would build); the same loop on our channels-last model: "
                f"{samplers.get('bare_over_reference_same_layout', float('nan')):.2f}x",
                r >= 1.2,
            )
        )
    return targets
