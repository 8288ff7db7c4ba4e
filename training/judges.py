"""Who decides whether a generated sample looks like its label, and how good the samples are.

A network judge can be fooled: SGLD follows a network's gradient, so a sample may be an adversarial
pattern that any similar network reads as the label while a human would not. A second judge of a
different kind (an RBF support vector machine on raw pixels) shares none of those gradients. It
is fitted on what the judged model was trained on (`model_training_images`): the data set's train
split, and the extra training images the manifest records (the digits models' rendered digits),
so a model that learned font-like digits is not marked down for drawing them.

Generation quality is measured as the paper does (Inception Score, Frechet distance), but in the
feature space of the independently trained softmax baseline, since Inception weights cannot be
downloaded here. The scores are only comparable within one feature extractor; held-out real digits
give the ceiling (IS) and the floor (FID) to read the samples' numbers against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.svm import SVC
from torch import Tensor, nn

from training.data import Dataset, LabeledImages

__all__ = [
    "SVC_MAX_TRAIN",
    "PixelSVCJudge",
    "feature_statistics",
    "fit_pixel_judge",
    "frechet_distance",
    "inception_score",
    "model_training_images",
    "network_features",
    "network_predictions",
]


class PixelSVCJudge:
    """An RBF support vector classifier on flattened pixels, fitted once on the TRAIN split."""

    def __init__(self, c: float = 10.0, gamma: str | float = "scale") -> None:
        self._svc = SVC(C=c, gamma=gamma)
        self.fitted_on: dict[str, object] | None = None

    def fit(self, x: Tensor, y: Tensor, *, split: str) -> PixelSVCJudge:
        if split in ("test", "validation"):
            raise ValueError(
                f"the pixel judge must be fitted on the train split, not {split!r}: "
                "samples are judged against held-out data later"
            )
        self._svc.fit(x.flatten(1).numpy(), y.numpy())
        self.fitted_on = {"split": split, "n": len(x)}
        return self

    def predict(self, x: Tensor) -> Tensor:
        if self.fitted_on is None:
            raise RuntimeError("PixelSVCJudge.predict called before fit(x_train, y_train)")
        return torch.from_numpy(self._svc.predict(x.flatten(1).numpy())).long()


SVC_MAX_TRAIN = 10_000


def fit_pixel_judge(
    dataset: Dataset, split: Mapping[str, Any] | None, *, seed: int, max_train: int = SVC_MAX_TRAIN
) -> PixelSVCJudge:
    """The pixel judge of a model: fitted on what the model was trained on
    (:func:`model_training_images`, from the manifest's ``training.split``), never on
    validation or test. An RBF SVC is quadratic in its training set: above ``max_train``
    images it is fitted on a subset drawn with ``seed``. ``fitted_on["split"]`` says whether
    extra training images were among them ("train + extra_train") or not ("train")."""
    train = model_training_images(dataset, split)
    grown = len(train) > len(dataset.train)
    if len(train) > max_train:
        generator = torch.Generator().manual_seed(seed)
        train = train.subset(torch.randperm(len(train), generator=generator)[:max_train])
    return PixelSVCJudge().fit(
        train.inputs(), train.labels, split="train + extra_train" if grown else "train"
    )


def model_training_images(dataset: Dataset, split: Mapping[str, Any] | None) -> LabeledImages:
    """The images a model was trained on: ``dataset.train`` (its own split, rebuilt from the
    manifest) plus the extra training images its manifest's ``training.split`` records (each
    once), rebuilt from that record (seeded, cached in data/cache). ValueError for an extra
    source this code does not know."""
    extra = (split or {}).get("extra_train")
    if not extra:
        return dataset.train
    from training.datasets.rendered_digits import SOURCES, add_to_training_split

    if extra.get("name") not in SOURCES:
        raise ValueError(f"unknown extra training images {extra.get('name')!r}")
    grown = add_to_training_split(
        dataset, int(extra["per_class"]), int(extra["seed"]), source=extra["name"]
    )
    return grown.train


@torch.no_grad()
def network_predictions(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """argmax class of `model` (x -> logits) for every row of x."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )
    finally:
        model.train(was_training)


@torch.no_grad()
def network_features(model: nn.Module, x: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(penultimate features, class probabilities) of a JEM or a bare backbone."""
    backbone: nn.Module = getattr(model, "backbone", model)
    forward_features: Callable[[Tensor], Tensor] = backbone.forward_features  # type: ignore[assignment]
    forward_head: Callable[[Tensor], Tensor] = backbone.forward_head  # type: ignore[assignment]
    was_training = backbone.training
    backbone.eval()
    try:
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            f = forward_features(x[i : i + batch_size])
            feats.append(f)
            probs.append(forward_head(f).softmax(dim=1))
        return torch.cat(feats), torch.cat(probs)
    finally:
        backbone.train(was_training)


def inception_score(probs: Tensor | NDArray[np.floating], eps: float = 1e-12) -> float:
    """exp(E_x KL(p(y|x) || p(y))), between 1 (uninformative or all one class) and K.

    High when each sample is confidently one class (low conditional entropy) and the classes are
    balanced over the set (high marginal entropy). One split: the sets here are small.
    """
    p = np.asarray(probs, dtype=np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def feature_statistics(
    feats: Tensor | NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need a (N >= 2, D) feature matrix, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(
    feats_a: Tensor | NDArray[np.floating], feats_b: Tensor | NDArray[np.floating]
) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2): the FID formula (Heusel et al., 2017)
    between Gaussians fitted to two feature sets. 0 for identical sets; grows with any shift."""
    mu_a, cov_a = feature_statistics(feats_a)
    mu_b, cov_b = feature_statistics(feats_b)
    # Tr((S_a S_b)^1/2) = Tr((S_a^1/2 S_b S_a^1/2)^1/2), and the latter is symmetric PSD: an
    # eigendecomposition is exact there and never returns the complex noise sqrtm can
    sqrt_a = _psd_sqrt(cov_a)
    inner = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_covmean = np.sqrt(np.clip(inner, 0.0, None)).sum()
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def _psd_sqrt(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    values, vectors = np.linalg.eigh(cov)
    root: NDArray[np.float64] = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return root
