"""`python -m training sweep PLAN.toml`: train a grid of recipe variants, then screen them.

A recipe search is many `train` runs of one preset with a few keys changed, each over a few
seeds, compared on validation data only (`training screen`). This command runs such a grid from
a plan file, several runs at a time (on one GPU, or on the cores of a CPU machine), and writes
one table. The plan (TOML, parsed by the standard library's `tomllib`)::

    preset = "emoji-jem"                 # required: the recipe every variant starts from
    seeds = [0, 1]                       # default [0]
    [set]                                # keys every run gets (docs/training.md has them all)
    device = "cuda"
    [ood]                                # optional validation-side OOD folders for the screen
    food-drink = "data/emoji/ood/val/food-drink"
    [variants.preset]                    # an empty table: the preset as it is
    [variants.wrn16-4]
    backbone = "wrn"
    backbone_kwargs = { depth = 16, widen_factor = 4 }

Every variant's config is built and checked before anything starts (an unknown key or a bad
value is the usual one-line error, exit 2). Run ``VARIANT-sSEED`` trains into ``--store`` as a
child process (`python -m training train`), its output in ``OUT/logs/``; a run that fails
(diverged beyond its guard: exit 3; killed; out of memory) is recorded as failed, with its log's
error line, and the others go on. Running the same plan again skips runs whose final model is
in the store with the planned config, resumes runs that left only checkpoints (an interrupted
sweep loses at most each run's last checkpoint interval), does not retry a run that failed
(``--retry-failed`` does), and leaves out (as "conflict") a run whose stored version was trained
with another config: the plan changed, so rename the variant or delete that version. Then
every finished run is screened (validation split, OOD sets drawn with the screen's seed, never
the test split) and ``OUT/sweep.json`` and ``OUT/sweep.md`` are written: one row per run, and
each variant's mean over its seeds. Exit status 0, or 1 if a run failed or was left out.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training.config import ConfigError
from training.sweep_plan import Plan, Run, differs, load_plan

__all__ = ["register", "run", "train_all"]


def _state(
    store: Any, run: Run, failed_before: Mapping[str, list[str]]
) -> tuple[str, str | None, str]:
    """(state, stored ref, why): "done" (a final model of the planned config is stored),
    "resume" (only its checkpoints are), "new", "failed before" (and not retried), or
    "conflict" (the newest stored version was trained with another config)."""
    from model_store import StoreError

    retry = "it failed with these settings in the last sweep; --retry-failed runs it again"
    # a failed run is not tried again with the same settings (a CPU run would fail the same way);
    # changed settings (a fixed typo) are a new try
    failed = failed_before.get(run.name) == list(run.overrides)
    try:
        versions = store.list_versions(run.name)
    except StoreError:
        return ("failed before", None, retry) if failed else ("new", None, "")
    ref = f"{run.name}:{versions[-1]}"
    manifest = store.manifest(ref)
    changed = differs(manifest.training.get("config", {}), run)
    if changed:
        delete = shlex.join([sys.executable, "-m", "model_store", "--store", str(store.root)])
        each = "" if len(versions) == 1 else f" (its versions: {', '.join(map(str, versions))})"
        why = (
            f"{ref} in the store was trained with another config (differs in {changed}): "
            f"rename the variant, or delete the run{each}: `{delete} delete {run.name}:N`"
        )
        return "conflict", ref, why
    if manifest.stage == "final":
        return "done", ref, ""
    if failed:
        return "failed before", ref, retry
    return "resume", ref, ""


def _failed_before(out: Path) -> dict[str, list[str]]:
    """The runs the last sweep in ``out`` recorded as failed, with the settings they had."""
    try:
        record = json.loads((out / "sweep.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    failed = ("failed", "failed before")
    runs = record.get("runs", [])
    return {r["name"]: r.get("overrides", []) for r in runs if r.get("status") in failed}


def _error_line(log: Path) -> str:
    """The last `error: ...` line a failed run printed, else its last line (a traceback's
    exception), so the table always says something of why."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return next(
        (ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1] if lines else ""
    )


def _command(plan: Plan, run: Run, store: Path, state: tuple[str, str | None, str]) -> list[str]:
    """The child's `train` command: from the preset, or from the checkpoint a "resume" has."""
    head = [sys.executable, "-m", "training", "train", "--no-progress"]
    kind, ref, _ = state
    start = ["--resume", ref] if kind == "resume" and ref else ["--preset", plan.preset]
    sets = [arg for o in run.overrides for arg in ("--set", o)]
    return [*head, *start, *sets, "--name", run.name, "--store", str(store)]


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def plan_states(
    plan: Plan, store: Path, out: Path, retry_failed: bool = False
) -> dict[str, tuple[str, str | None, str]]:
    """Every run's state in ``store`` (see `_state`), before anything starts."""
    from model_store import ModelStore

    failed = {} if retry_failed else _failed_before(out)
    stored = ModelStore(store)
    return {run.name: _state(stored, run, failed) for run in plan.runs}


def train_all(
    plan: Plan,
    store: Path,
    out: Path,
    parallel: int,
    deadline_s: float | None = None,
    retry_failed: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run every run's training, `parallel` at a time; what became of each, by run name. After
    ``deadline_s`` seconds the runs still training are stopped (their checkpoints kept, so the
    same sweep resumes them) and the ones not started are left, so a sweep on a machine lent for
    a fixed time still screens what finished."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    states = plan_states(plan, store, out, retry_failed)
    results: dict[str, dict[str, Any]] = {}
    waiting = []
    for r in plan.runs:
        state, ref, why = states[r.name]
        if state in ("new", "resume"):
            waiting.append(r)
        else:
            status = "done before" if state == "done" else state
            results[r.name] = {"status": status, "ref": ref, **({"error": why} if why else {})}
            if why:
                print(f"sweep: {r.name} left out: {why}", flush=True)
    running: dict[str, tuple[subprocess.Popen[bytes], float, Any]] = {}
    stop_at = None if deadline_s is None else time.monotonic() + deadline_s
    try:
        while waiting or running:
            if stop_at is not None and time.monotonic() >= stop_at:
                for r in waiting:
                    results[r.name] = {"status": "not started (deadline)"}
                for name, (_, started, _) in running.items():
                    seconds = time.monotonic() - started
                    results[name] = {"status": "stopped (deadline)", "seconds": seconds}
                print(f"sweep: deadline; stopping {', '.join(sorted(running))}", flush=True)
                break
            while waiting and len(running) < parallel:
                r = waiting.pop(0)
                log = (logs / f"{r.name}.log").open("ab")
                cmd = _command(plan, r, store, states[r.name])
                log.write(f"$ {shlex.join(cmd)}\n".encode())
                log.flush()
                child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                running[r.name] = (child, time.monotonic(), log)
                print(f"sweep: started {r.name} ({states[r.name][0]})", flush=True)
            time.sleep(0.5)
            for name, (child, started, log) in list(running.items()):
                if child.poll() is None:
                    continue
                log.close()
                del running[name]
                seconds = time.monotonic() - started
                ok = child.returncode == 0
                result = {"status": "trained" if ok else "failed", "seconds": seconds}
                result["returncode"] = child.returncode
                if not ok:
                    result["error"] = _error_line(logs / f"{name}.log")
                results[name] = result
                line = f"sweep: {name} {result['status']} in {seconds:.0f} s"
                print(line + (f" ({result['error']})" if not ok else ""), flush=True)
    finally:  # interrupted: stop the children; their checkpoints let the next sweep resume
        for child, _, log in running.values():
            _stop(child)
            log.close()
    return results


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from training.cli import add_set_argument, add_verbose
    from training.eval_cli import add_ood_folder_argument

    p = sub.add_parser(
        "sweep",
        help="train a grid of recipe variants, then screen them on validation data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plan", type=Path, help="the plan file (TOML)")
    p.add_argument("--out", type=Path, help="results and logs (default: runs/sweeps/PLAN-STEM)")
    p.add_argument("--store", type=Path, help="where the runs are trained (default: OUT/store)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads of each run")
    p.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="stop the runs still training after this long (resumable), then screen the rest",
    )
    add_set_argument(p, "a config setting for every run, over the plan's (repeatable)")
    p.add_argument(
        "--data-root",
        default=None,
        help="data root of every run and of the screen (the config's data_root, over the plan's)",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="run again the runs that failed last time"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the screen's validation halves")
    p.add_argument(
        "--screen-device",
        default="auto",
        help="where the finished runs are screened (default auto: cuda > mps > cpu, as train)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print each run's state and command, and stop"
    )
    add_ood_folder_argument(p, "; validation-side images, never the report's folders")
    add_verbose(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {args.parallel}")
    extra = [f"data_root={args.data_root}"] if args.data_root else []
    plan = load_plan(args.plan, args.threads, (*extra, *args.overrides))
    out = args.out or Path("runs/sweeps") / args.plan.stem
    store = args.store or out / "store"
    if args.dry_run:
        return _dry_run(plan, store, out, args.retry_failed)
    try:
        with _only_sweep_in(out):
            return _run(args, plan, out, store)
    except KeyboardInterrupt:
        print("sweep: interrupted; the same command resumes it", file=sys.stderr)
        return 130


@contextmanager
def _only_sweep_in(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the sweep: a second sweep into the same folder (and so, by
    default, the same store and logs) is refused rather than training every run twice."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sweep is running with --out {out}") from None
        yield


def _dry_run(plan: Plan, store: Path, out: Path, retry_failed: bool) -> int:
    """Each run's state and, for those that would train, its command; 1 if any is left out."""
    states = plan_states(plan, store, out, retry_failed)
    for r in plan.runs:
        state, _, why = states[r.name]
        print(f"# {r.name}: {state}{': ' + why if why else ''}")
        if state in ("new", "resume"):
            print(shlex.join(_command(plan, r, store, states[r.name])))
    return 1 if any(st[0] in ("conflict", "failed before") for st in states.values()) else 0


def _run(args: argparse.Namespace, plan: Plan, out: Path, store: Path) -> int:
    from training.distributed import select_device
    from training.sweep_report import screen_runs, write_report

    deadline = None if args.deadline_minutes is None else 60 * args.deadline_minutes
    results = train_all(plan, store, out, args.parallel, deadline, args.retry_failed)
    ood: Mapping[str, Path] = {**plan.ood, **dict(args.ood_folders)}
    device = str(select_device(args.screen_device))  # auto: the project's cuda > mps > cpu
    rows = screen_runs(plan, results, store, ood, args.data_root, args.seed, device)
    print(write_report(plan, rows, out))
    print(f"sweep: wrote {out / 'sweep.md'} and {out / 'sweep.json'}")
    ok = ("trained", "done before", "stopped (deadline)", "not started (deadline)")
    return 0 if all(r["status"] in ok for r in rows) else 1
