"""Serving-side levers for the digits models, screened on the validation faces only.

`python -m tests.digit_screens REF... [--per-digit 8] [--skeleton]`: the accuracy of stored
models on tests/rendered_digits.py's *validation* faces (seed 1, as every choice of issue 17
was made; there is deliberately no option for the test faces) under

- **test-time views** (test-time augmentation): each upload converted several times with one
  free parameter of the model's normalisation moved (`jem.normalize`: the target slant, the
  ink coverage, the box-width range; or the upload rotated before normalising), the model's
  softmax averaged over the views (and, beside it, the logits averaged);
- with `--skeleton`, a **skeleton stroke step**: the fitted ink thinned to one pixel
  (`skimage.morphology.skeletonize`; scikit-image is not a dependency of the project:
  `.venv/bin/pip install scikit-image` first) and thickened to the data set's coverage with a
  square or a round pen, instead of dilating or eroding the ink as drawn; read by the models
  and by an RBF SVC fitted on the data set's train split only (the model-free yardstick of
  tests/rendered_digits.py);
- with `--ensembles`, **ensembles of two stored models**: every pair's logits (and softmaxes)
  averaged, one view each, and how many digits every model given gets wrong (errors that all
  models share are ones no mean of them can fix).

docs/training.md, "Tenth round" and "Eleventh round", give what these measured and why none was
kept. The
parameters are moved by setting `jem.normalize`'s module constants for the duration of one
conversion (`_moved`): a screen, not a serving path.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

import jem.normalize as norm
from jem.imaging import to_pixels
from model_store import ModelStore, StoreError
from tests.rendered_digits import VALIDATION_FONTS, RenderedDigit, render_digits

Views = list[dict[str, Any]]
_SLANT, _COVERAGE = norm._V3_SLANT, norm._INK_COVERAGE
VIEW_FAMILIES: dict[str, Views] = {
    "slant +-0.1": [{"slant": _SLANT + d} for d in (-0.1, 0.0, 0.1)],
    "slant +-0.15 (5 views)": [{"slant": _SLANT + d} for d in (-0.15, -0.075, 0.0, 0.075, 0.15)],
    "coverage +-4 points": [{"coverage": _COVERAGE + d} for d in (-0.04, 0.0, 0.04)],
    "width 18-22 / 20-24 / 22-26 px": [{"widths": w} for w in ((18, 22), (20, 24), (22, 26))],
    "slant x coverage (9 views)": [
        {"slant": _SLANT + a, "coverage": _COVERAGE + b}
        for a in (-0.1, 0.0, 0.1)
        for b in (-0.04, 0.0, 0.04)
    ],
    "rotated -5 / 0 / +5 deg": [{"rotate": d} for d in (-5, 0, 5)],
    "rotated -10 .. +10 deg (5 views)": [{"rotate": d} for d in (-10, -5, 0, 5, 10)],
}


@contextmanager
def _moved(view: dict[str, Any]) -> Iterator[None]:
    saved = norm._V3_SLANT, norm._INK_COVERAGE, norm._V2_WIDTH
    norm._V3_SLANT = view.get("slant", saved[0])
    norm._INK_COVERAGE = view.get("coverage", saved[1])
    norm._V2_WIDTH = view.get("widths", saved[2])
    try:
        yield
    finally:
        norm._V3_SLANT, norm._INK_COVERAGE, norm._V2_WIDTH = saved


def _rotated(image: Image.Image, degrees: float) -> Image.Image:
    """The upload rotated, the corners filled with its border's median colour."""
    if degrees == 0:
        return image
    image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    arr = np.asarray(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    return image.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def _inputs(items: list[RenderedDigit], spec: Any, view: dict[str, Any]) -> torch.Tensor:
    with _moved(view):
        u8 = np.stack(
            [
                to_pixels(_rotated(Image.open(io.BytesIO(i.data)), view.get("rotate", 0)), spec)
                for i in items
            ]
        )
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _skeleton_step(pen: str) -> Callable[..., Any]:
    """`jem.normalize._digits` with its stroke step replaced: skeletonise, then thicken."""
    from scipy.ndimage import binary_dilation
    from skimage.morphology import skeletonize

    def digits(grey: Any, height: int, width: int, widths: Any, target: Any) -> Any:
        mask = norm._ink(grey)
        if mask is None:
            return None
        frame = (height * norm._BLOCK * norm._WORK, width * norm._BLOCK * norm._WORK)
        fitted = norm._fit(mask, frame, widths)
        if target is not None:
            fitted = norm._deslant(fitted, frame, widths, target)
        skeleton = skeletonize(np.pad(fitted, frame[0] // 4))
        best, best_gap = fitted, float("inf")
        for r in range(1, 4 * norm._WORK + 1):
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            disk = (xx * xx + yy * yy) <= r * r + r
            thick = norm._morph(skeleton, r) if pen == "square" else binary_dilation(skeleton, disk)
            refit = norm._fit(thick, frame, widths)
            gap = abs(float(refit.mean()) - norm._INK_COVERAGE)
            if gap >= best_gap:
                break
            best, best_gap = refit, gap
        return norm._block_counts(best, height, width)

    return digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("refs", nargs="+", help="model references, e.g. digits-jem:41")
    parser.add_argument("--per-digit", type=int, default=8)
    parser.add_argument("--store", default=None)
    parser.add_argument("--skeleton", action="store_true", help="also the skeleton stroke step")
    parser.add_argument("--ensembles", action="store_true", help="also every pair's mean")
    parser.add_argument("--no-views", action="store_true", help="skip the test-time views")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        models = [ModelStore(args.store).load(ref) for ref in args.refs]
    except StoreError as exc:
        parser.error(str(exc))
    items = render_digits(VALIDATION_FONTS, args.per_digit, seed=1)
    labels = torch.tensor([item.label for item in items])
    print(f"{len(items)} validation-face digits; accuracy of the softmax mean (logit mean)")
    one_view: dict[str, torch.Tensor] = {}
    for loaded in models:
        cache: dict[str, torch.Tensor] = {}

        def logits(view: dict[str, Any], loaded: Any = loaded, cache: Any = cache) -> Any:
            key = repr(sorted(view.items()))
            if key not in cache:
                with torch.no_grad():
                    cache[key] = loaded.model(_inputs(items, loaded.input_spec, view))
            return cache[key]

        one_view[str(loaded.ref)] = logits({})
        one = (one_view[str(loaded.ref)].argmax(1) == labels).float().mean()
        print(f"{loaded.ref} ({loaded.input_spec.normalization}): one view {one:.4f}")
        for family, views in {} if args.no_views else VIEW_FAMILIES.items():
            stacked = torch.stack([logits(v) for v in views])
            prob = (stacked.softmax(-1).mean(0).argmax(1) == labels).float().mean()
            logit = (stacked.mean(0).argmax(1) == labels).float().mean()
            print(f"  {family:28s} {prob:.4f} ({logit:.4f})")
    if args.ensembles:
        _screen_ensembles(one_view, labels)
    if args.skeleton:
        _screen_skeleton(models, items, labels)


def _screen_ensembles(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
    refs = list(logits)
    for i, a in enumerate(refs):
        for b in refs[i + 1 :]:
            mean = ((logits[a] + logits[b]).argmax(1) == labels).float().mean()
            soft = (logits[a].softmax(1) + logits[b].softmax(1)).argmax(1) == labels
            print(f"  {a} + {b}: softmax mean {soft.float().mean():.4f} ({mean:.4f})")
    wrong = torch.stack([logits[r].argmax(1) != labels for r in refs])
    print(
        f"errors per model {[int(w.sum()) for w in wrong]}: wrong in every model "
        f"{int(wrong.all(0).sum())}, in at least half {int((wrong.float().mean(0) >= 0.5).sum())}, "
        f"in at least one {int(wrong.any(0).sum())}"
    )


def _screen_skeleton(models: list[Any], items: list[RenderedDigit], labels: torch.Tensor) -> None:
    from sklearn.svm import SVC

    from training.data import load_digits_dataset

    train = load_digits_dataset(seed=0).train
    svc = SVC(gamma=0.001).fit(((train.inputs()[:, 0] + 1) * 8).flatten(1).numpy(), train.labels)
    spec = models[0].input_spec
    original = norm._digits
    for step in ("as drawn", "square", "round"):
        norm._digits = original if step == "as drawn" else _skeleton_step(step)
        try:
            x = _inputs(items, spec, {})
        finally:
            norm._digits = original
        svc_acc = (svc.predict(((x[:, 0] + 1) * 8).flatten(1).numpy()) == labels.numpy()).mean()
        line = f"stroke step {step:9s} ({spec.normalization}): SVC {svc_acc:.4f}"
        with torch.no_grad():
            for m in models:
                line += f"  {m.ref} {(m.model(x).argmax(1) == labels).float().mean():.4f}"
        print(line)


if __name__ == "__main__":
    main()
