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

from model_store import ModelRef, ModelStore, StoreError
from training.best import candidates_from
from training.cli import add_model_source_args, set_threads
from training.eval_metrics import batched_logits, dataset_for

__all__ = ["crossfit_choice", "register", "run", "run_versions"]


def run_versions(store: ModelStore, ref: str) -> list[tuple[int, ModelRef]]:
    """(step, version) of every version kept from the run ``ref`` belongs to, by step."""
    mref = store.resolve(ref)
    run_id = store.manifest(mref).training.get("run_id")
    found: dict[int, ModelRef] = {}
    for version in store.list_versions(mref.name):
        other = ModelRef(mref.name, version)
        training = store.manifest(other).training
        if training.get("run_id") == run_id:
            found[int(str(training.get("step", 0)))] = other  # a resumed run's later save wins
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "steps",
        help="validation accuracy of a run's kept checkpoints, and what choosing among them gains",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="any version of each run to read")
    add_model_source_args(p)
    p.add_argument("--halvings", type=int, default=50, help="random validation halvings")
    p.add_argument("--seed", type=int, default=0, help="seed of the halvings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    store = ModelStore(args.store)
    for ref in args.runs:
        kept = run_versions(store, ref)
        if len(kept) < 2:
            raise StoreError(
                f"{ref}: one version of its run is kept; train with --set keep_checkpoints_final=N "
                "to keep its checkpoints"
            )
        last = store.load(kept[-1][1])
        dataset = dataset_for(last.manifest, args.data_root)
        x, y = dataset.val.inputs(), dataset.val.labels
        correct = torch.stack(
            [batched_logits(store.load(r).model, x).argmax(1) == y for _, r in kept]
        )
        cfg = last.manifest.training.get("config")
        c: dict[str, Any] = cfg if isinstance(cfg, dict) else {}
        first = candidates_from(
            float(c.get("px_weight", 0)), int(c.get("px_start", 0)), int(c.get("px_warmup", 0))
        )
        steps = [s for s, _ in kept]
        result = crossfit_choice(correct, steps, first, args.halvings, args.seed)
        accs = ", ".join(
            f"{s}: {100 * float(row.float().mean()):.2f}%"
            for s, row in zip(steps, correct, strict=True)
        )
        print(f"{ref} ({len(y)} validation images; candidates from step {first})")
        print(f"  val acc by step: {accs}")
        print(f"  best on the whole split: step {result['full_choice']}")
        print(
            f"  cross-fitted ({args.halvings} halvings x 2, seed {args.seed}): chosen "
            f"{100 * result['chosen']:.2f}%, last step {100 * result['last']:.2f}%, gain "
            f"{100 * result['gain']:+.2f} points (sd {100 * result['gain_std']:.2f}); chosen "
            + ", ".join(f"{s} x{n}" for s, n in result["chosen_steps"].items())
        )
    return 0
