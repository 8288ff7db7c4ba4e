"""`python -m training energies MODEL`: where a model's energy puts each kind of input.

A JEM's energy E(x) = -logsumexp f(x) is an OOD score only where training pushed it up: at the
replay buffer's chains. This command shows, on validation-side data only (the validation split,
the standard OOD sets drawn with ``screen``'s seed, ``--ood`` folders), each set's energy beside
its roughness (mean absolute difference of neighbouring pixels, training.health's figure), and
the buffer's chains and fresh draws from its init for comparison; then how far a few SGLD steps
(the manifest's step size and noise) bring validation images and photo patches down. A set
whose images are unlike every chain the buffer ever held (smoother, say) and that SGLD takes far
below the data's energy is one the energy cannot flag: the density has a hole there.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jem import JEM, ReplayBuffer, SGLDConfig, sgld_sample
from jem.metrics import auroc
from model_store import LoadedModel, ModelStore
from model_store.manifest import Sampling
from training.cli import add_model_source_args, set_threads
from training.eval_cli import add_ood_folder_argument
from training.eval_metrics import dataset_for
from training.health import roughness
from training.ood_sets import folder_ood_set, make_ood_sets
from training.screen import SCREEN_OOD_SEED

__all__ = ["energy_table", "register", "run"]

DESCENT_IMAGES = 128  # images per set run through SGLD


def _row(name: str, x: Tensor, e: Tensor, e_val: Tensor | None) -> dict[str, Any]:
    return {
        "set": name,
        "n": len(x),
        "mean": float(e.mean()),
        "p10": float(e.quantile(0.1)),
        "median": float(e.median()),
        "p90": float(e.quantile(0.9)),
        "roughness": float(roughness(x).mean()),
        # higher energy = more likely OOD, as screen and evaluate score it
        "auroc": auroc(e_val, e) if e_val is not None else None,
    }


def energy_table(
    loaded: LoadedModel,
    x_val: Tensor,
    sets: dict[str, Tensor],
    sgld_steps: Sequence[int] = (5, 100),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per set: energy mean / p10 / median / p90, roughness, energy AUROC against
    ``x_val``; then the buffer's chains and fresh init draws (when the model has a buffer), and
    validation images and photo patches after each of ``sgld_steps`` SGLD steps (unconditional,
    the manifest's sampling step size and noise, clamped to the data range)."""
    model: JEM = loaded.model.eval()
    with torch.no_grad():
        e_val = model.energy(x_val)
        rows = [_row("validation", x_val, e_val, None)]
        for name, x in sets.items():
            rows.append(_row(name, x, model.energy(x), e_val))
        if loaded.buffer is not None and "x" in loaded.buffer:
            state = {k: v.cpu() for k, v in loaded.buffer.items()}
            buffer = ReplayBuffer.from_state_dict(state, torch.Generator().manual_seed(seed))
            rows.append(_row("buffer chains", buffer.x, model.energy(buffer.x), e_val))
            draws = torch.Generator().manual_seed(seed)
            y = buffer.labels[torch.randperm(len(buffer.labels), generator=draws)[: len(x_val)]]
            fresh = buffer.init.sample(len(y), buffer.shape, y, draws)
            rows.append(_row("fresh init draws", fresh, model.energy(fresh), e_val))
    sampling = loaded.manifest.sampling or Sampling(steps=1, step_size=1.0, noise_std=0.01)
    starts = {"validation": x_val, "photo_patches": sets.get("photo_patches")}
    for steps in sgld_steps:
        config = SGLDConfig(steps, sampling.step_size, sampling.noise_std, sampling.clamp)
        for name, x0 in starts.items():
            if x0 is None:
                continue
            x = sgld_sample(
                model, x0[:DESCENT_IMAGES], config, generator=torch.Generator().manual_seed(seed)
            )
            with torch.no_grad():
                rows.append(_row(f"{name} after {steps} SGLD steps", x, model.energy(x), e_val))
    return rows


def _table(ref: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"### {ref}",
        "",
        "| set | n | E mean | p10 | median | p90 | roughness | energy AUROC vs validation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        au = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(
            f"| {r['set']} | {r['n']} | {r['mean']:.2f} | {r['p10']:.2f} | {r['median']:.2f} "
            f"| {r['p90']:.2f} | {r['roughness']:.3f} | {au} |"
        )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "energies",
        help="energies of data, OOD sets, buffer chains and SGLD descents (validation only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model references")
    add_model_source_args(p)
    p.add_argument(
        "--sgld-steps",
        default="5,100",
        type=lambda s: [int(v) for v in s.split(",") if v.strip()],
        help="SGLD descents to measure, comma-separated step counts (default 5,100; '' for none)",
    )
    add_ood_folder_argument(p, "; validation-side images here, never the report's folders")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    folders: dict[str, Path] = dict(args.ood_folders)
    store = ModelStore(args.store)
    for ref in args.models:
        loaded = store.load(ref)
        dataset = dataset_for(loaded.manifest, args.data_root)
        x_val = dataset.val.inputs()
        extra = {name: folder_ood_set(folder, dataset.spec) for name, folder in folders.items()}
        sets = make_ood_sets(x_val, dataset.spec, seed=SCREEN_OOD_SEED, extra=extra)
        print(_table(str(loaded.ref), energy_table(loaded, x_val, sets, args.sgld_steps)))
        print()
    return 0
