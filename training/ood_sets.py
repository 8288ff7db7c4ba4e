"""Out-of-distribution test sets: inputs a digits (or CIFAR) model should refuse.

Each set has as many images as the in-distribution test split, so AUROC and FPR@95 weigh both
sides equally, and is drawn from a seeded generator, so the numbers in a report reproduce:
- uniform_noise:   every pixel uniform in the data range; far from any digit, the easy case;
- constant:        one flat value per image (per channel for RGB): no strokes at all;
- pixel_shuffled:  real test digits with their pixels permuted: the same intensity histogram as
                   the data, none of its spatial structure, so a detector that only looks at
                   pixel statistics fails here;
- photo_patches:   crops of the two real photographs shipped with scikit-learn, converted and
                   downsampled exactly as the service converts an uploaded image (the InputSpec):
                   natural-image statistics, the realistic case.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from jem.imaging import to_pixels
from jem.preprocess import InputSpec, uint8_to_tensor
from training.data import DatasetError
from training.readers import FormatError, read_images

__all__ = [
    "OOD_SET_NAMES",
    "constant_images",
    "folder_ood_set",
    "image_to_tensor",
    "make_ood_sets",
    "photo_patches",
    "pixel_shuffled",
    "uniform_noise",
]

OOD_SET_NAMES = ("uniform_noise", "constant", "pixel_shuffled", "photo_patches")


def uniform_noise(n: int, spec: InputSpec, generator: torch.Generator) -> Tensor:
    lo, hi = spec.value_range
    return lo + torch.rand((n, *spec.shape), generator=generator) * (hi - lo)


def constant_images(n: int, spec: InputSpec, generator: torch.Generator) -> Tensor:
    lo, hi = spec.value_range
    values = lo + torch.rand((n, spec.channels, 1, 1), generator=generator) * (hi - lo)
    return values.expand(n, *spec.shape).contiguous()


def pixel_shuffled(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image's spatial positions permuted independently (channels move together)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    perms = torch.argsort(torch.rand((b, h * w), generator=generator), dim=1)
    return flat.gather(2, perms.unsqueeze(1).expand(b, c, h * w)).reshape(b, c, h, w).clone()


def image_to_tensor(image: Image.Image, spec: InputSpec) -> Tensor:
    """A PIL image -> (1, C, H, W) the way an upload is turned into model input."""
    return uint8_to_tensor(to_pixels(image, spec), spec)


def photo_patches(n: int, spec: InputSpec, generator: torch.Generator) -> Tensor:
    """Random square crops of sklearn's sample photographs (china.jpg, flower.jpg)."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(img) for img in load_sample_images().images]
    side_lo = 2 * max(spec.height, spec.width)
    patches = []
    for _ in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        side_hi = min(photo.width, photo.height, 12 * max(spec.height, spec.width))
        side = int(torch.randint(side_lo, max(side_hi, side_lo) + 1, (1,), generator=generator))
        left = int(torch.randint(photo.width - side + 1, (1,), generator=generator))
        top = int(torch.randint(photo.height - side + 1, (1,), generator=generator))
        patches.append(image_to_tensor(photo.crop((left, top, left + side, top + side)), spec))
    return torch.cat(patches)


def make_ood_sets(
    x_test: Tensor,
    spec: InputSpec,
    *,
    seed: int = 0,
    extra: dict[str, Callable[[int], Tensor]] | None = None,
) -> dict[str, Tensor]:
    """The standard OOD sets, each len(x_test) images of spec.shape, seeded per set.

    `extra` adds named sets built by the caller (e.g. SVHN / CIFAR-100 for a CIFAR-10 model):
    name -> function(n) returning n images.
    """
    n = len(x_test)

    def gen(offset: int) -> torch.Generator:
        # one stream per set: adding or reordering a set does not change the others
        return torch.Generator().manual_seed(seed * 1000 + offset)

    sets = {
        "uniform_noise": uniform_noise(n, spec, gen(1)),
        "constant": constant_images(n, spec, gen(2)),
        "pixel_shuffled": pixel_shuffled(x_test, gen(3)),
        "photo_patches": photo_patches(n, spec, gen(4)),
    }
    for name, build in (extra or {}).items():
        sets[name] = build(n)
    return sets


def folder_ood_set(folder: Path, spec: InputSpec) -> Callable[[int], Tensor]:
    """A folder of the user's own images as an OOD set (``--ood NAME=FOLDER``): every image read
    and converted as the service converts uploads, (N, C, H, W) in the spec's value range,
    whatever ``n`` is asked for. Raises DatasetError when the folder cannot be read."""
    try:
        images = read_images(folder, spec)
    except FormatError as exc:
        raise DatasetError(f"--ood: {exc}") from None
    x = uint8_to_tensor(images, spec)
    return lambda n: x  # all of the folder's images, however many the test split has
