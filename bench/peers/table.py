"""The peer comparison's Markdown table, from `measure_peers`'s results (bench/peers/run.py)."""

from __future__ import annotations

from typing import Any

from bench.peers.run import BASELINE, SERVICE, SERVICE_BASE64

__all__ = ["PEER_NOTES", "peers_markdown"]

# what a reader needs beside a peer's figures: written under the table when that peer is in it
# and a round ran before another (BentoML's note is about what the rounds before leave)
PEER_NOTES = {
    "BentoML": (
        "its adaptive batching holds a batch for a wait it learns from the last 50 batches "
        "(BentoML 1.4.40 has no fixed window), so its single-image rows, run after the heavier "
        "rows of the round before, carry the wait learned there: about 150-270 ms per request "
        "at concurrency 1, which minutes of light traffic decay (docs/benchmarks-peers.md, "
        "twelfth part)"
    ),
}


def _cell(r: dict[str, Any]) -> str:
    if r["images"] > 1:
        return f"{r['images_per_s']:,.0f} img/s ({r['p99_ms']:,.1f})"
    return f"{r['requests_per_s']:,.0f} ({r['p99_ms']:,.1f})"


def _rate(r: dict[str, Any]) -> float:
    return float(r["images_per_s"])


def _by_round(servers: dict[str, list[dict[str, Any]]], names: list[str]) -> list[str]:
    """The single-image concurrency-64 row round by round, in the order run (whether a server
    gains as it runs: a JVM compiling its hot paths); nothing for results without rounds."""
    kept = [n for n in names if len(servers[n][2].get("rounds", ())) > 1]
    if not kept:
        return []
    rounds = len(servers[kept[0]][2]["rounds"])
    head = f"{servers[kept[0]][2]['row']}, by round: req/s (server CPU ms/request)"
    lines = ["", f"| {head} | " + " | ".join(str(j + 1) for j in range(rounds)) + " |"]
    lines.append("|---|" + "---|" * rounds)
    for n in kept:
        cells = " | ".join(
            f"{r['requests_per_s']:,.0f} ({r['server_cpu_ms_per_request']:.2f})"
            for r in servers[n][2]["rounds"]
        )
        lines.append(f"| {n} | {cells} |")
    return lines


def peers_markdown(results: dict[str, Any]) -> str:
    """The issue's table: this service, the best peer per row, the ratio; then every server."""
    servers: dict[str, list[dict[str, Any]]] = results["servers"]
    peers = [n for n in servers if n not in (SERVICE, SERVICE_BASE64, BASELINE)]
    lines = [
        "| row: req/s or images/s (p99 ms) | this service | best peer | ratio |",
        "|---|---|---|---|",
    ]
    for i, mine in enumerate(servers[SERVICE]):
        if peers:
            best = max(peers, key=lambda n: _rate(servers[n][i]))
            theirs = servers[best][i]
            ratio = _rate(mine) / _rate(theirs) if _rate(theirs) else float("inf")
            cells = f"{best} {_cell(theirs)} | {ratio:.2f}x"
        else:
            cells = "(no peer measured) | -"
        lines.append(f"| {mine['row']} | {_cell(mine)} | {cells} |")
    if BASELINE in servers:
        lines += [
            "",
            f"| row | this service | baseline ({results['environment']['plan']['baseline']}) "
            "| ratio |",
            "|---|---|---|---|",
        ]
        for mine, old in zip(servers[SERVICE], servers[BASELINE], strict=True):
            ratio = _rate(mine) / _rate(old) if _rate(old) else float("inf")
            lines.append(f"| {mine['row']} | {_cell(mine)} | {_cell(old)} | {ratio:.2f}x |")
    names = list(servers)
    same = [n for n in names if n != SERVICE_BASE64]  # one process: memory and start-up once
    lines += ["", "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, mine in enumerate(servers[SERVICE]):
        lines.append(f"| {mine['row']} | " + " | ".join(_cell(servers[n][i]) for n in names) + " |")
    cpu = " | ".join(f"{servers[n][2]['server_cpu_ms_per_request']:.2f}" for n in names)
    lines.append(f"| server CPU ms per request, {servers[SERVICE][2]['row']} | {cpu} |")
    lines += _by_round(servers, names)
    memory = results["memory_mb"]
    lines += ["", "| | " + " | ".join(same) + " |", "|---|" + "---|" * len(same)]
    lines.append("| peak memory MB (PSS of the process tree) | " + " | ".join(
        f"{memory[n]['peak']:,.0f}" for n in same) + " |")  # fmt: skip
    lines.append("| seconds to ready | " + " | ".join(
        f"{results['startup_s'][n]:.1f}" for n in same) + " |")  # fmt: skip
    for name, why in results["unavailable"].items():
        lines.append(f"\n{name}: not measured: {why}")
    env = results["environment"]
    plan = env["plan"]
    if plan["rounds"] + plan.get("warmup_rounds", 0) > 1:  # a round ran before another's rows
        lines += [f"\n{name}: {PEER_NOTES[name]}" for name in peers if name in PEER_NOTES]
    workers = f"this service: {plan.get('workers', 1)} worker process(es) (JEM_WORKERS)"
    if plan.get("baseline"):
        workers += f", the baseline: {plan.get('baseline_workers') or plan.get('workers', 1)}"
    lines.append(f"\n{workers}; every peer: one worker or replica")
    warmup = plan.get("warmup_rounds", 0)
    after = f" after {warmup} untimed warm-up round(s)" if warmup else ""
    lines.append(
        f"\n{env['plan']['rounds']} interleaved rounds{after}; load average before "
        f"{env['load_before'][0]:.1f}, after {env['load_after'][0]:.1f} on {env['cpu_count']} cores"
    )
    return "\n".join(lines) + "\n"
