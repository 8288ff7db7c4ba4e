"""The digits data set under a chosen upload normalisation (``TrainConfig.normalization``).

scikit-learn's digits are already in the form every ``digits-v*`` normalisation produces (the
form NIST's preprocessing gave them, `jem.normalize`), so their pixels stay as they are; what
changes is the input spec the model is stored with, and so what the service (and the rendered
training digits, `training.datasets.rendered_digits`) applies to images of any other size.
Old checkpoints keep the step they were trained with: it is in their manifests.
"""

from __future__ import annotations

from dataclasses import replace

from jem.normalize import NORMALIZATIONS
from training.data import Dataset, DatasetError, LabeledImages

__all__ = ["with_normalization"]


def with_normalization(dataset: Dataset, name: str) -> Dataset:
    """``dataset`` (the 8x8 digits) with ``spec.normalization = name`` on it and its splits.

    Raises DatasetError for a data set without a digits normalisation (anything but the 8x8
    greyscale digits) or an unknown name.
    """
    if name not in NORMALIZATIONS:
        raise DatasetError(f"unknown normalization {name!r}; known: {', '.join(NORMALIZATIONS)}")
    if dataset.spec.normalization is None or dataset.spec.height != 8:
        raise DatasetError(f"normalization {name!r} is for the 8x8 digits, not {dataset.name!r}")
    spec = replace(dataset.spec, normalization=name)

    def part(images: LabeledImages) -> LabeledImages:
        return LabeledImages(images.images, images.labels, spec)

    return replace(
        dataset,
        train=part(dataset.train),
        val=part(dataset.val),
        test=part(dataset.test),
        spec=spec,
    )
