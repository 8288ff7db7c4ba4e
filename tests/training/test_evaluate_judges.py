"""Inception Score, Frechet distance and the pixel judge on cases with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.judges import PixelSVCJudge, frechet_distance, inception_score


def test_inception_score_bounds() -> None:
    k = 10
    assert inception_score(torch.full((50, k), 1.0 / k)) == pytest.approx(1.0)
    # confident and balanced: every class equally often, each sample one-hot -> exactly K
    one_hot = torch.eye(k).repeat(7, 1)
    assert inception_score(one_hot) == pytest.approx(k, rel=1e-6)
    # confident but all the same class: no diversity -> 1
    assert inception_score(torch.eye(k)[[3] * 40]) == pytest.approx(1.0)


def test_frechet_distance_known_answers() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a mean shift of s in every one of d coordinates adds d * s^2 (same covariance)
    shifted = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifted == pytest.approx([8 * 0.25, 8 * 1.0, 8 * 4.0], rel=1e-6)
    # scaling by 2: covariances S and 4S, so Tr(S + 4S - 2 * 2S) = Tr(S), plus the mean shift
    b = rng.normal(size=(500, 8))
    expected = np.trace(np.cov(b, rowvar=False)) + (b.mean(0) ** 2).sum()
    assert frechet_distance(b, 2 * b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="feature matrix"):
        frechet_distance(a[:1], a)


def test_pixel_judge_refuses_held_out_splits_and_classifies() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-0.5] * 4, [0.5] * 4])
    y = torch.randint(2, (200,), generator=g)
    x = centers[y] + 0.1 * torch.randn(200, 4, generator=g)
    with pytest.raises(ValueError, match="train split"):
        PixelSVCJudge().fit(x, y, split="test")
    with pytest.raises(RuntimeError, match="before fit"):
        PixelSVCJudge().predict(x)
    judge = PixelSVCJudge().fit(x, y, split="train")
    assert judge.fitted_on == {"split": "train", "n": 200}
    assert torch.equal(judge.predict(x), y)


def test_the_pixel_judge_learns_what_the_model_learned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model trained with rendered digits is judged by an SVC that saw them too (rebuilt from
    the manifest's record, each image once); one trained on the data set alone, by one that
    saw the data set's train split."""
    from training.data import load_dataset
    from training.datasets import rendered_digits
    from training.judges import fit_pixel_judge, model_training_images

    digits = load_dataset("digits")
    assert model_training_images(digits, None) is digits.train
    assert model_training_images(digits, digits.split) is digits.train
    extra = rendered_digits.RenderedDigits(
        np.full((10, 8, 8, 1), 255, dtype=np.uint8),
        np.arange(10),
        {"name": rendered_digits.NAME, "per_class": 1, "seed": 3, "fonts": {}},
        np.zeros(10, dtype=np.int64),
    )
    monkeypatch.chdir(tmp_path)  # the cache goes to ./data/cache
    monkeypatch.setattr(
        rendered_digits, "build_rendered_digits", lambda n, seed, norm, source: extra
    )
    record = {"name": rendered_digits.NAME, "per_class": 1, "seed": 3, "real_repeat": 3}
    train = model_training_images(digits, {**digits.split, "extra_train": record})
    assert len(train) == len(digits.train) + 10
    assert torch.equal(train.images[len(digits.train) :], torch.from_numpy(extra.images))
    with pytest.raises(ValueError, match="unknown extra training images"):
        model_training_images(digits, {"extra_train": {"name": "mnist", "per_class": 1}})
    # the judge evaluate and screen fit: on those images, a seeded subset above max_train
    grown = fit_pixel_judge(digits, {**digits.split, "extra_train": record}, seed=0)
    assert grown.fitted_on == {"split": "train + extra_train", "n": len(digits.train) + 10}
    own = fit_pixel_judge(digits, digits.split, seed=0)
    assert own.fitted_on == {"split": "train", "n": len(digits.train)}
    few = [fit_pixel_judge(digits, None, seed=s, max_train=200) for s in (0, 0, 1)]
    assert few[0].fitted_on == {"split": "train", "n": 200}
    x = digits.val.inputs()
    assert torch.equal(few[0].predict(x), few[1].predict(x))  # seeded
    assert not torch.equal(few[0].predict(x), few[2].predict(x))  # another subset
