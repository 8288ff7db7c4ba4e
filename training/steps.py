"""`python -m training steps RUN`: would a validation-chosen checkpoint beat the run's last weights?

``load_best_model_at_end`` (training/best.py) ships the weights of a run's best validation. Its
own validation figure is the maximum of noisy ones, so it cannot say whether choosing helps. This
command answers on validation data only, from the versions a run kept
(``--set keep_checkpoints_final=N`` with ``checkpoint_every`` a multiple of ``validate_every``):
for each of ``--halvings`` random halvings of the validation split it chooses the step on one
half (best accuracy, ties to the later step, from ``px_start + px_warmup`` on for a JEM, as the
trainer does) and scores that step on the other half, both ways round; the mean of those held-out
figures, against the last step's on the same halves, is the cross-fitted estimate of what
choosing gains. The test split is never read.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import Tensor

from model_store import Manifest, ModelRef, ModelStore, StoreError
from training.best import candidates_from
from training.cli import add_model_source_args, set_threads
from training.config import KEEP_AND_LOG_KEYS, config_differences
from training.eval_metrics import batched_logits, dataset_for

__all__ = ["crossfit_choice", "register", "run", "run_versions", "weights_step"]


def weights_step(manifest: Manifest) -> int:
    """The step a version's weights are from: a ``load_best_model_at_end`` run's final version
    holds its chosen step's (``training.selection``), every other version its own step's."""
    training = manifest.training
    selection = training.get("selection")
    if manifest.stage == "final" and isinstance(selection, dict):
        return int(str(selection["chosen_step"]))
    return int(str(training.get("step", 0)))


def run_versions(store: ModelStore, ref: str) -> list[tuple[int, ModelRef]]:
    """(step, version) of every version kept from the run ``ref`` belongs to, by the step its
    weights are from (a later version with the same step's weights wins)."""
    mref = store.resolve(ref)
    run_id = store.manifest(mref).training.get("run_id")
    found: dict[int, ModelRef] = {}
    for version in store.list_versions(mref.name):
        other = ModelRef(mref.name, version)
        manifest = store.manifest(other)
        if manifest.training.get("run_id") == run_id:
            found[weights_step(manifest)] = other
    return sorted(found.items(), key=lambda item: item[0])


def _pick(accuracy: Tensor, allowed: Tensor) -> int:
    """The index of the best allowed accuracy, the later one on ties."""
    masked = torch.where(allowed, accuracy, torch.full_like(accuracy, -1.0))
    return int(torch.nonzero(masked == masked.max()).max())


def crossfit_choice(
    correct: Tensor, steps: list[int], first_step: int, halvings: int = 50, seed: int = 0
) -> dict[str, Any]:
    """Cross-fitted accuracy of choosing the step on validation halves.

    ``correct``: bool, (len(steps), n) -- whether each kept step's weights read each validation
    image right; ``steps`` ascending, the last is the run's last. Returns the mean held-out
    accuracy of the step chosen on the other half (``chosen``), the last step's on the same
    halves (``last``), their per-halving differences' mean and standard deviation, and how often
    each step was chosen. Raises ValueError when no step is at or after ``first_step``.
    """
    allowed = torch.tensor([s >= first_step for s in steps])
    if not bool(allowed.any()):
        raise ValueError(f"no kept step at or after step {first_step} to choose from")
    n = correct.shape[1]
    chosen_acc, last_acc, counts = [], [], dict.fromkeys(steps, 0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(halvings):
        halves = torch.randperm(n, generator=gen).chunk(2)
        for fit, held in (halves, halves[::-1]):
            i = _pick(correct[:, fit].float().mean(1), allowed)
            counts[steps[i]] += 1
            chosen_acc.append(float(correct[i, held].float().mean()))
            last_acc.append(float(correct[-1, held].float().mean()))
    gains = torch.tensor(chosen_acc) - torch.tensor(last_acc)
    return {
        "chosen": sum(chosen_acc) / len(chosen_acc),
        "last": sum(last_acc) / len(last_acc),
        "gain": float(gains.mean()),
        "gain_std": float(gains.std()) if len(gains) > 1 else 0.0,
        "chosen_steps": {step: count for step, count in counts.items() if count},
        "full_choice": steps[_pick(correct.float().mean(1), allowed)],
    }


# config keys that change what a run keeps or prints, not its trajectory
_NOT_TRAJECTORY = KEEP_AND_LOG_KEYS | {"load_best_model_at_end"}


def check_one_run(store: ModelStore, refs: list[str]) -> None:
    """Raise `StoreError` unless the runs of ``refs`` have one config (keys in
    ``_NOT_TRAJECTORY`` aside): ``--one-run`` reads them as one training's steps."""
    configs = []
    for ref in refs:
        cfg = store.manifest(store.resolve(ref)).training.get("config")
        configs.append(cfg if isinstance(cfg, dict) else {})
    for ref, cfg in zip(refs[1:], configs[1:], strict=True):
        differ = config_differences(configs[0], cfg, _NOT_TRAJECTORY)
        if differ:
            shown = ", ".join(f"{k} {configs[0].get(k)!r} vs {cfg.get(k)!r}" for k in differ[:4])
            more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
            raise StoreError(
                f"--one-run: {refs[0]} and {ref} are not one training (config differs: "
                f"{shown}{more}); read them without --one-run"
            )


def halvings(raw: str) -> int:
    """``--halvings``: an integer >= 1 (argparse names this function in its error)."""
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "steps",
        help="validation accuracy of a run's kept checkpoints, and what choosing among them gains",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="any version of each run to read")
    add_model_source_args(p)
    p.add_argument(
        "--halvings",
        type=halvings,
        default=50,
        help="random validation halvings (>= 1; default 50)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the halvings")
    p.add_argument(
        "--one-run",
        action="store_true",
        help="the RUNs are one training (a rerun of the same config and seed: bit-exact on CPU) "
        "whose versions were kept in different runs: read them as one run's steps (refused "
        "when their configs differ beyond what they keep and log)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    store = ModelStore(args.store)
    if args.one_run:
        check_one_run(store, args.runs)
    for refs in [args.runs] if args.one_run else [[ref] for ref in args.runs]:
        merged: dict[int, ModelRef] = {}
        for ref in refs:  # a later run's version of the same step wins
            merged.update(run_versions(store, ref))
        kept = sorted(merged.items(), key=lambda item: item[0])
        name = " + ".join(refs)
        if len(kept) < 2:
            raise StoreError(
                f"{name}: one version of its run is kept; train with --set "
                "keep_checkpoints_final=N to keep its checkpoints"
            )
        _report(store, name, kept, args)
    return 0


def _report(
    store: ModelStore, name: str, kept: list[tuple[int, ModelRef]], args: argparse.Namespace
) -> None:
    last = store.load(kept[-1][1])
    dataset = dataset_for(last.manifest, args.data_root)
    x, y = dataset.val.inputs(), dataset.val.labels
    models = [store.load(r).model for _, r in kept[:-1]] + [last.model]  # the last, loaded above
    correct = torch.stack([batched_logits(model, x).argmax(1) == y for model in models])
    cfg = last.manifest.training.get("config")
    c: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
    first = candidates_from(
        float(c.get("px_weight", 0)), int(c.get("px_start", 0)), int(c.get("px_warmup", 0))
    )
    steps = [s for s, _ in kept]
    try:
        result = crossfit_choice(correct, steps, first, args.halvings, args.seed)
    except ValueError as exc:  # a JEM whose kept steps all precede its full generative weight
        raise StoreError(f"{name}: {exc}") from None
    accs = ", ".join(
        f"{s}: {100 * float(row.float().mean()):.2f}%"
        for s, row in zip(steps, correct, strict=True)
    )
    print(f"{name} ({len(y)} validation images; candidates from step {first})")
    iterations = last.manifest.training.get("iterations")
    if isinstance(iterations, int) and steps[-1] < iterations:
        print(f"  the run's last step ({iterations}) is not kept: step {steps[-1]} stands in")
    print(f"  val acc by step: {accs}")
    print(f"  best on the whole split: step {result['full_choice']}")
    print(
        f"  cross-fitted ({args.halvings} halving{'s' if args.halvings > 1 else ''} x 2, "
        f"seed {args.seed}): chosen "
        f"{100 * result['chosen']:.2f}%, last step {100 * result['last']:.2f}%, gain "
        f"{100 * result['gain']:+.2f} points (sd {100 * result['gain_std']:.2f}); chosen "
        + ", ".join(f"{s} x{n}" for s, n in result["chosen_steps"].items())
    )
