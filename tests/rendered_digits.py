"""Digits as people photograph and draw them, rendered from handwriting-like Debian fonts.

Each image: one digit from one font, 200..420 px on a side, off-centre, rotated up to +-12
degrees, blurred; either a *photo* (dark ink on uneven light paper with sensor noise, RGB JPEG)
or a *canvas* (light strokes on a dark canvas, PNG; some with a transparent background). The
fonts come from Debian packages (`make system-deps`). Two disjoint font sets: TEST_FONTS for the
acceptance test, VALIDATION_FONTS (and another seed) for every choice made while building the
normalisation and the training data, so nothing is tuned on the test images. The digits models
are trained on a third set, disjoint from both by package and family
(training/datasets/rendered_digits.py; tests/training/test_datasets_rendered_digits.py checks).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from jem.normalize import NORMALIZATIONS

__all__ = [
    "TEST_FONTS",
    "VALIDATION_FONTS",
    "RenderedDigit",
    "font_package",
    "missing_fonts",
    "render_digits",
]

# Debian package (plus "-FACE" where a package gives several faces: `font_package`) -> font file
TEST_FONTS = {
    "fonts-humor-sans": "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "fonts-dkg-handwriting": "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "fonts-breip": "/usr/share/fonts/truetype/breip/Breip.ttf",
    "fonts-femkeklaver": "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf",
    "fonts-comic-neue": "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
}
VALIDATION_FONTS = {
    "fonts-bwht": "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf",
    "fonts-bwht-build": "/usr/share/fonts/opentype/bwht/BecauseWeBuild-Regular.otf",
    "fonts-rufscript": "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf",
    "fonts-dkg-handwriting-bold": "/usr/share/fonts/truetype/fifthhorseman/dkgBd.ttf",
    # the package's four other hands (added with rendered-digits-v2: 8 faces, not 4, so one
    # face's odd glyph moves the figure half as much)
    **{
        f"fonts-bwht-{face.lower()}": f"/usr/share/fonts/opentype/bwht/BecauseWe{face}-Regular.otf"
        for face in ("Connect", "Create", "Mentor", "Organize")
    },
}
_FACE_SUFFIXES = ("-bold", "-build", "-connect", "-create", "-mentor", "-organize")


@dataclass(frozen=True)
class RenderedDigit:
    label: int
    font: str
    kind: str  # "photo" (JPEG) or "canvas" (PNG)
    data: bytes

    @property
    def ext(self) -> str:
        return "jpg" if self.kind == "photo" else "png"


def font_package(name: str) -> str:
    """The Debian package of a face named in TEST_FONTS or VALIDATION_FONTS."""
    for suffix in _FACE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def missing_fonts(fonts: dict[str, str]) -> list[str]:
    return sorted({font_package(name) for name, path in fonts.items() if not Path(path).is_file()})


def _glyph(font_path: str, digit: int, height: int, stroke: int) -> Image.Image:
    """The digit as an L mask (255 = ink), about `height` px tall, tightly cropped."""
    font = ImageFont.truetype(font_path, size=height)
    left, top, right, bottom = font.getbbox(str(digit), stroke_width=stroke)
    pad = height // 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text(
        (pad - left, pad - top),
        str(digit),
        fill=255,
        font=font,
        stroke_width=stroke,
        stroke_fill=255,
    )
    return mask


def _render(rng: np.random.Generator, font_path: str, digit: int, kind: str) -> bytes:
    width, height = (int(v) for v in rng.integers(200, 421, size=2))
    glyph_h = int(min(width, height) * rng.uniform(0.35, 0.7))
    stroke = int(rng.integers(0, 4)) if kind == "canvas" else int(rng.integers(0, 2))
    mask = _glyph(font_path, digit, glyph_h, stroke)
    mask = mask.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BICUBIC, expand=True)
    mask = mask.crop(mask.getbbox()) if mask.getbbox() else mask
    if mask.width >= width or mask.height >= height:
        mask = mask.resize((min(mask.width, width - 2), min(mask.height, height - 2)))
    # off-centre: anywhere the whole glyph stays on the image
    x = int(rng.integers(0, width - mask.width + 1))
    y = int(rng.integers(0, height - mask.height + 1))
    ink = np.zeros((height, width), dtype=np.float64)
    ink[y : y + mask.height, x : x + mask.width] = np.asarray(mask, dtype=np.float64) / 255.0
    blurred = Image.fromarray(np.round(ink * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5)))
    )
    ink = np.asarray(blurred, dtype=np.float64) / 255.0
    out = io.BytesIO()
    if kind == "photo":
        # paper lit unevenly from one side, a pen colour, sensor noise; saved by a phone as JPEG
        gx = np.linspace(0.0, 1.0, width)[None, :] * rng.uniform(-40, 40)
        gy = np.linspace(0.0, 1.0, height)[:, None] * rng.uniform(-30, 30)
        paper = rng.uniform(190, 240) + gx + gy
        tint = rng.uniform(-12, 12, size=3)
        pen = rng.uniform(10, 90, size=3)
        rgb = (paper[..., None] + tint) * (1 - ink[..., None]) + pen * ink[..., None]
        rgb += rng.normal(0.0, 4.0, size=rgb.shape)
        image = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")
        image.save(out, format="JPEG", quality=int(rng.integers(70, 93)))
    else:
        # a drawing app: light strokes on a dark canvas; one in three on a transparent canvas,
        # half of those with dark strokes (what an HTML canvas gives before anything fills it)
        stroke_level = rng.uniform(200, 255)
        if rng.random() < 1 / 3:
            rgba = np.zeros((height, width, 4), dtype=np.uint8)
            rgba[..., :3] = np.uint8(stroke_level if rng.random() < 0.5 else 255 - stroke_level)
            rgba[..., 3] = np.round(ink * 255).astype(np.uint8)
            image = Image.fromarray(rgba, "RGBA")
        else:
            back = rng.uniform(0, 40)
            grey = back * (1 - ink) + stroke_level * ink
            image = Image.fromarray(np.round(grey).astype(np.uint8), "L").convert("RGB")
        image.save(out, format="PNG")
    return out.getvalue()


def render_digits(fonts: dict[str, str], per_digit: int, seed: int) -> list[RenderedDigit]:
    """`per_digit` images of each digit 0..9 for each font, photos and canvases alternating."""
    rng = np.random.default_rng(seed)
    out: list[RenderedDigit] = []
    for name, path in sorted(fonts.items()):
        for digit in range(10):
            for i in range(per_digit):
                kind = "photo" if i % 2 == 0 else "canvas"
                out.append(RenderedDigit(digit, name, kind, _render(rng, path, digit, kind)))
    return out


def _main() -> None:
    """`python -m tests.rendered_digits [--fonts validation|test] REF...`: accuracy of stored
    models (and of an RBF SVC fitted on the digits' train split, a model-free yardstick) on the
    rendered digits, each converted by the model's own input spec; what choices were made on."""
    import argparse

    import torch
    from sklearn.svm import SVC

    from jem.imaging import to_pixels
    from model_store import ModelStore, StoreError
    from training.data import load_digits_dataset

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("refs", nargs="+", help="model references, e.g. digits-jem:10")
    parser.add_argument("--fonts", choices=("validation", "test"), default="validation")
    parser.add_argument("--per-digit", type=int, default=4)
    parser.add_argument("--store", default=None)
    parser.add_argument(
        "--by-font",
        action="store_true",
        help="also each font's correct count per digit, and the commonest wrong label",
    )
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        help="convert with this normalisation instead of the model's own (a screen of a new "
        "step on a model trained with another: its figures favour the model's own)",
    )
    parser.add_argument(
        "--neighbours",
        action="store_true",
        help="for each font-and-digit cell the model reads at most half of: its 5 nearest "
        "digits in the data set's train split, and how many digits are nearer than the "
        "nearest of its own class",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = ModelStore(args.store)
    try:  # before rendering and fitting: an unknown name or version is the store's one line
        models = [store.load(ref) for ref in args.refs]
    except StoreError as exc:
        parser.error(str(exc))
    fonts, seed = (VALIDATION_FONTS, 1) if args.fonts == "validation" else (TEST_FONTS, 0)
    items = render_digits(fonts, args.per_digit, seed)
    labels = np.array([item.label for item in items])
    train = load_digits_dataset(seed=0).train
    # (N, 64) block counts on the data set's 0..16 scale: the SVC's and the neighbours' pixels
    train_x = ((train.inputs()[:, 0] + 1) * 8).flatten(1).numpy()
    svc = SVC(gamma=0.001).fit(train_x, train.labels)
    for loaded in models:
        spec = loaded.input_spec
        if args.normalization is not None:
            spec = replace(spec, normalization=args.normalization)
        u8 = np.stack([to_pixels(Image.open(io.BytesIO(item.data)), spec) for item in items])
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.no_grad():
            got = loaded.model(x).argmax(1).numpy()
        counts = (x[:, 0] + 1).flatten(1).numpy() * 8
        svc_got = svc.predict(counts)
        print(
            f"{loaded.ref} ({spec.normalization}): {(got == labels).mean():.3f} on {len(items)} "
            f"{args.fonts} digits; SVC on the same pixels {(svc_got == labels).mean():.3f}"
        )
        if args.by_font:
            _print_by_font(items, got)
        if args.neighbours:
            _print_neighbours(items, got, counts, train_x, train.labels.numpy())


def _print_by_font(items: list[RenderedDigit], got: np.ndarray) -> None:
    """One row per font: for each digit 0..9, how many of its images were read right, and
    (in brackets, where any was not) the label most of the wrong ones got."""
    labels = np.array([item.label for item in items])
    fonts = np.array([item.font for item in items])
    for font in sorted(set(fonts.tolist())):
        cells = []
        for digit in range(10):
            mine = got[(fonts == font) & (labels == digit)]
            wrong = mine[mine != digit]
            top = f"({np.bincount(wrong, minlength=10).argmax()})" if len(wrong) else ""
            cells.append(f"{int((mine == digit).sum())}{top}".ljust(5))
        print(f"  {font:28s} {' '.join(cells)}")


def _print_neighbours(
    items: list[RenderedDigit],
    got: np.ndarray,
    pixels: np.ndarray,
    train_pixels: np.ndarray,
    train_labels: np.ndarray,
) -> None:
    """For each font-and-digit cell read right at most half the time: the labels of the 5
    nearest training digits (Euclidean, on the 0..16 block counts; `pixels` (N, 64) and
    `train_pixels` (M, 64) on that scale) over the cell's images, and the median rank of the
    nearest training digit of the cell's own class (0: it is the nearest of all)."""
    labels = np.array([item.label for item in items])
    fonts = np.array([item.font for item in items])
    for font in sorted(set(fonts.tolist())):
        for digit in range(10):
            cell = (fonts == font) & (labels == digit)
            if not cell.any() or (got[cell] == digit).mean() > 0.5:
                continue
            dist = ((pixels[cell][:, None, :] - train_pixels[None]) ** 2).sum(-1)
            order = np.argsort(dist, axis=1, kind="stable")
            votes = np.bincount(train_labels[order[:, :5]].ravel(), minlength=10)
            ranks = [int(np.argmax(train_labels[row] == digit)) for row in order]
            shown = ", ".join(f"{k}: {n}" for k, n in enumerate(votes) if n)
            print(
                f"  {font} {digit}: 5 nearest training digits' labels {{{shown}}}; "
                f"nearest {digit} at rank {int(np.median(ranks))} (median)"
            )


if __name__ == "__main__":
    _main()
