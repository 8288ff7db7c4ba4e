"""What evaluation adds for CIFAR models, only where the data and weights are already on disk.

- OOD sets: a CIFAR-10 model is tested against SVHN and CIFAR-100 test images (the paper's
  table 3), when they are under the data root. Nothing is downloaded.
- Inception Score / FID with the standard Inception network (torch-fidelity), only when the
  package is installed and its weights are in the local torch hub cache: evaluation never starts
  a download, so on an offline machine these are reported as skipped, with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jem import InputSpec, tensor_to_uint8
from training.data import Dataset, DatasetError, LabeledImages, load_dataset

__all__ = ["FIDELITY_WEIGHTS", "extra_ood_sets", "inception_metrics", "inception_weights"]

# the file torch-fidelity loads its Inception-v3 (FID variant) from
FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
_OOD_FOR = {"cifar10": ("svhn", "cifar100"), "cifar100": ("svhn", "cifar10")}


def extra_ood_sets(
    dataset: Dataset, data_root: str | None, seed: int
) -> tuple[dict[str, Callable[[int], Tensor]], dict[str, str]]:
    """(name -> builder of n test images, name -> why it was skipped) for the model's data set."""
    builders: dict[str, Callable[[int], Tensor]] = {}
    skipped: dict[str, str] = {}
    for name in _OOD_FOR.get(dataset.name, ()):
        try:
            other = load_dataset(name, root=data_root, download=False, seed=seed)
        except (DatasetError, RuntimeError, OSError) as exc:
            skipped[name] = f"not available under data root {data_root!r}: {exc}"
            continue

        def build(n: int, test: LabeledImages = other.test, name: str = name) -> Tensor:
            if test.spec != dataset.spec:
                raise DatasetError(f"{name} images do not match the model's input spec")
            index = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
            return test.inputs(index)

        builders[name] = build
    return builders, skipped


def inception_weights() -> Path | None:
    """The locally cached torch-fidelity Inception weights, or None (never downloads)."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_WEIGHTS
    return path if path.is_file() else None


def inception_metrics(samples: Tensor, real: Tensor, spec: InputSpec) -> dict[str, Any] | None:
    """Inception IS / FID of RGB samples vs real images; None for non-RGB models (digits)."""
    if spec.color_mode != "RGB":
        return None
    weights = inception_weights()
    if weights is None:
        return {
            "skipped": "torch-fidelity or its Inception weights are not available locally "
            f"(expected {Path(torch.hub.get_dir()) / 'checkpoints' / FIDELITY_WEIGHTS})"
        }
    import torch_fidelity

    class _Images(torch.utils.data.Dataset[Tensor]):
        def __init__(self, x: Tensor) -> None:
            self.u8 = tensor_to_uint8(x).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8

        def __len__(self) -> int:
            return len(self.u8)

        def __getitem__(self, i: int) -> Tensor:
            return self.u8[i]

    result = torch_fidelity.calculate_metrics(
        input1=_Images(samples),
        input2=_Images(real),
        isc=True,
        fid=True,
        cuda=False,
        verbose=False,
        save_cpu_ram=True,
    )
    return {
        "inception_score": float(result["inception_score_mean"]),
        "fid": float(result["frechet_inception_distance"]),
        "weights": str(weights),
    }
