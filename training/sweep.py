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
(diverged beyond its guard: exit 3; killed; out of memory) is recorded as failed and the others
go on. Running the same plan again skips runs whose final model is in the store with the
planned config and resumes runs that left only checkpoints, so an interrupted sweep loses at
most each run's last checkpoint interval. Then every finished run is screened (validation
split, OOD sets drawn with the screen's seed, never the test split) and ``OUT/sweep.json`` and
``OUT/sweep.md`` are written: one row per run, and each variant's mean over its seeds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import ConfigError, TrainConfig, apply_overrides
from training.presets import PRESETS, preset

__all__ = ["Plan", "Run", "load_plan", "register", "run"]

_NOT_COMPARED = frozenset({"num_threads"})  # settings of the machine, not of the recipe


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    overrides: tuple[str, ...]  # `--set` strings, seed last
    config: TrainConfig

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@dataclass(frozen=True)
class Plan:
    preset: str
    seeds: tuple[int, ...]
    runs: tuple[Run, ...]
    ood: dict[str, Path] = field(default_factory=dict)


def _setting(key: str, value: Any) -> str:
    """A TOML value as the `--set key=value` string `apply_overrides` parses."""
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, dict | list):
        return f"{key}={json.dumps(value)}"
    return f"{key}={value}"


def load_plan(path: Path, threads: int = 0, extra: tuple[str, ...] = ()) -> Plan:
    """Parse and check a plan file; ``extra`` `key=value` settings go last, over every run's
    (a tiny trial of a plan: ``iterations=4``). Raises ConfigError (one line) for anything
    wrong in it."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no plan file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - {"preset", "seeds", "set", "ood", "variants"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}")
    name = raw.get("preset")
    if name not in PRESETS:
        raise ConfigError(f"{path}: preset must be one of {sorted(PRESETS)}, got {name!r}")
    seeds = raw.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    variants = raw.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: needs at least one [variants.NAME] table")
    common = [_setting(k, v) for k, v in raw.get("set", {}).items()]
    common += [f"num_threads={threads}"] if threads else []
    runs = []
    for variant, keys in variants.items():
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: variants.{variant} must be a table of config keys")
        if "seed" in keys:
            raise ConfigError(f"{path}: variants.{variant} sets seed; use the plan's seeds")
        for seed in seeds:
            own = (_setting(k, v) for k, v in keys.items())
            overrides = (*common, *own, *extra, f"seed={seed}")
            try:
                config = apply_overrides(preset(name), list(overrides))
            except ConfigError as exc:
                raise ConfigError(f"{path}: variants.{variant}: {exc}") from None
            runs.append(Run(variant, seed, overrides, config))
    ood = {str(k): Path(v) for k, v in raw.get("ood", {}).items()}
    return Plan(name, tuple(seeds), tuple(runs), ood)


def _differs(stored: Mapping[str, Any], run: Run) -> list[str]:
    planned = json.loads(json.dumps(run.config.to_dict()))
    stored = json.loads(json.dumps(dict(stored)))
    return sorted(k for k in planned if k not in _NOT_COMPARED and stored.get(k) != planned[k])


def _state(store: Any, run: Run) -> tuple[str, str | None]:
    """("done", ref) if a final model of the planned config is stored, ("resume", ref) if only
    its checkpoints are, ("new", None) if nothing is. ConfigError if the newest stored version
    was trained with another config (the plan changed since): it is not reused silently."""
    from model_store import StoreError

    try:
        versions = store.list_versions(run.name)
    except StoreError:
        return "new", None
    ref = f"{run.name}:{versions[-1]}"
    manifest = store.manifest(ref)
    changed = _differs(manifest.training.get("config", {}), run)
    if changed:
        raise ConfigError(
            f"the store holds {ref} trained with another config (differs in {changed}); "
            "give another --store, or remove it"
        )
    return ("done" if manifest.stage == "final" else "resume"), ref


def _command(plan: Plan, run: Run, store: Path, resume: str | None) -> list[str]:
    head = [sys.executable, "-m", "training", "train", "--no-progress"]
    start = ["--resume", resume] if resume else ["--preset", plan.preset]
    sets = [arg for o in run.overrides for arg in ("--set", o)]
    return [*head, *start, *sets, "--name", run.name, "--store", str(store)]


def train_all(
    plan: Plan, store: Path, logs: Path, parallel: int, deadline_s: float | None = None
) -> dict[str, dict[str, Any]]:
    """Run every run's training, `parallel` at a time; what became of each, by run name. After
    ``deadline_s`` seconds the runs still training are stopped (their checkpoints kept, so the
    same sweep resumes them) and the ones not started are left, so a sweep on a machine lent for
    a fixed time still screens what finished."""
    from model_store import ModelStore

    logs.mkdir(parents=True, exist_ok=True)
    states = {run.name: _state(ModelStore(store), run) for run in plan.runs}  # all checked first
    results: dict[str, dict[str, Any]] = {}
    waiting = [run for run in plan.runs if states[run.name][0] != "done"]
    for run in plan.runs:
        if states[run.name][0] == "done":
            results[run.name] = {"status": "done before", "ref": states[run.name][1]}
    running: dict[str, tuple[subprocess.Popen[bytes], float, Any]] = {}
    stop_at = None if deadline_s is None else time.monotonic() + deadline_s
    try:
        while waiting or running:
            if stop_at is not None and time.monotonic() >= stop_at:
                for run in waiting:
                    results[run.name] = {"status": "not started (deadline)"}
                for name, (_, started, _) in running.items():
                    seconds = time.monotonic() - started
                    results[name] = {"status": "stopped (deadline)", "seconds": seconds}
                print(f"sweep: deadline; stopping {sorted(running)}", flush=True)
                break
            while waiting and len(running) < parallel:
                run = waiting.pop(0)
                state, ref = states[run.name]
                log = (logs / f"{run.name}.log").open("ab")
                cmd = _command(plan, run, store, ref if state == "resume" else None)
                log.write(f"$ {shlex.join(cmd)}\n".encode())
                log.flush()
                child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                running[run.name] = (child, time.monotonic(), log)
                print(f"sweep: started {run.name} ({state})", flush=True)
            time.sleep(0.5)
            for name, (child, started, log) in list(running.items()):
                if child.poll() is None:
                    continue
                log.close()
                del running[name]
                seconds = time.monotonic() - started
                ok = child.returncode == 0
                results[name] = {"status": "trained" if ok else "failed", "seconds": seconds}
                results[name]["returncode"] = child.returncode
                print(f"sweep: {name} {results[name]['status']} in {seconds:.0f} s", flush=True)
    finally:  # interrupted: stop the children; their checkpoints let the next sweep resume
        for child, _, log in running.values():
            child.terminate()
            child.wait()
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
    p.add_argument("--data-root", default=None, help="data root for the screen (as `screen`)")
    p.add_argument("--seed", type=int, default=0, help="seed of the screen's validation halves")
    p.add_argument(
        "--screen-device",
        default="auto",
        help="where the finished runs are screened (default auto: cuda if there is one)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the runs' commands and stop")
    add_ood_folder_argument(p, "; validation-side images, never the report's folders")
    add_verbose(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from training.sweep_report import screen_runs, write_report

    if args.parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {args.parallel}")
    plan = load_plan(args.plan, args.threads, tuple(args.overrides))
    out = args.out or Path("runs/sweeps") / args.plan.stem
    store = args.store or out / "store"
    if args.dry_run:
        for r in plan.runs:
            print(shlex.join(_command(plan, r, store, None)))
        return 0
    try:
        deadline = None if args.deadline_minutes is None else 60 * args.deadline_minutes
        results = train_all(plan, store, out / "logs", args.parallel, deadline)
    except KeyboardInterrupt:
        print("sweep: interrupted; the same command resumes it", file=sys.stderr)
        return 130
    ood: Mapping[str, Path] = {**plan.ood, **dict(args.ood_folders)}
    device = args.screen_device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = screen_runs(plan, results, store, ood, args.data_root, args.seed, device)
    print(write_report(plan, rows, out))
    return 0 if all(r["status"] != "failed" for r in rows) else 1
