"""The digit renderer of ``rendered-digits-v1``, ``-v2`` and ``-v6``
(training/datasets/rendered_digits.py): the Debian font faces it draws in (``FONTS``; v2 adds
``MORE_FONTS`` and the pen-stroke faces ``STROKE_FONTS``, v6 the hands of ``HAND_FONTS``) and one
image of a digit as a camera or a drawing app gives it: size, stroke width, slant, width,
rotation, elastic distortion, position, blur, sensor noise, JPEG compression, either polarity.
Change a list or the renderer of a face and the data set's name changes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from training.datasets.hershey import HERSHEY_DIR, Strokes, digit_strokes, draw_strokes

__all__ = [
    "FONTS",
    "HAND_FONTS",
    "MORE_FONTS",
    "STROKE_FONTS",
    "missing_packages",
    "render_one",
]

_TT, _OT = "/usr/share/fonts/truetype", "/usr/share/fonts/opentype"
# Debian package -> its faces used (every file must exist: `make system-deps` installs them)
FONTS: dict[str, tuple[str, ...]] = {
    "fonts-dancingscript": (
        f"{_OT}/dancingscript/DancingScript-Regular.otf",
        f"{_OT}/dancingscript/DancingScript-Bold.otf",
    ),
    "fonts-kristi": (f"{_TT}/kristi/Kristi.ttf",),
    "fonts-ecolier-court": (f"{_TT}/ecolier-court/Ecolier-court.ttf",),
    "fonts-kaushanscript": (f"{_OT}/kaushanscript/KaushanScript-Regular.otf",),
    "fonts-tlwg-purisa-ttf": (
        f"{_TT}/tlwg/Purisa.ttf",
        f"{_TT}/tlwg/Purisa-Bold.ttf",
        f"{_TT}/tlwg/Purisa-Oblique.ttf",
    ),
    "fonts-staypuft": (f"{_TT}/staypuft/StayPuft.ttf",),
    "fonts-fantasque-sans": (
        f"{_TT}/fantasque-sans/Normal/TTF/FantasqueSansMono-Regular.ttf",
        f"{_TT}/fantasque-sans/Normal/TTF/FantasqueSansMono-Italic.ttf",
    ),
    "fonts-sil-andika": (f"{_TT}/andika/Andika-Regular.ttf", f"{_TT}/andika/Andika-Italic.ttf"),
    "fonts-liberation": (
        f"{_TT}/liberation/LiberationSans-Regular.ttf",
        f"{_TT}/liberation/LiberationSans-Italic.ttf",
        f"{_TT}/liberation/LiberationSerif-Regular.ttf",
        f"{_TT}/liberation/LiberationMono-Regular.ttf",
    ),
    "fonts-freefont-ttf": (
        f"{_TT}/freefont/FreeSans.ttf",
        f"{_TT}/freefont/FreeSerif.ttf",
        f"{_TT}/freefont/FreeSerifItalic.ttf",
        f"{_TT}/freefont/FreeMono.ttf",
    ),
    "fonts-gnutypewriter": (f"{_TT}/gnutypewriter/GNUTypewriter.ttf",),
    "fonts-averia-gwf": (
        f"{_TT}/averia-gwf/AveriaGWF-Regular.ttf",
        f"{_TT}/averia-gwf/AveriaGWF-Italic.ttf",
    ),
    "fonts-cabinsketch": (f"{_TT}/cabinsketch/CabinSketch-Regular.ttf",),
    "fonts-isabella": (f"{_TT}/isabella/Isabella.ttf",),
    "fonts-quicksand": (
        f"{_TT}/quicksand/Quicksand-Regular.ttf",
        f"{_TT}/quicksand/Quicksand-Bold.ttf",
    ),
    "fonts-klee": (f"{_TT}/klee/KleeOne-Regular.ttf", f"{_TT}/klee/KleeOne-SemiBold.ttf"),
    "fonts-leckerli-one": (f"{_TT}/leckerli-one/LeckerliOne-Regular.ttf",),
    "fonts-sjfonts": (f"{_TT}/sjfonts/Delphine.ttf", f"{_TT}/sjfonts/SteveHand.ttf"),
    "fonts-yusei-magic": (f"{_TT}/yusei-magic/YuseiMagic-Regular.ttf",),
    "fonts-tomsontalks": (f"{_TT}/tomsontalks/TomsonTalks.ttf",),
    "fonts-nanum-extra": (
        f"{_TT}/nanum/NanumPen.ttf",
        f"{_TT}/nanum/NanumBrush.ttf",
        f"{_TT}/nanum/NanumBarunpenR.ttf",
    ),
    "fonts-seto": (f"{_TT}/seto/setofont.ttf",),
    "fonts-kiloji": (f"{_TT}/kiloji/kiloji.ttf", f"{_TT}/kiloji/kiloji_b.ttf"),
    "fonts-havana": (f"{_OT}/havana/Havana-Regular.otf",),
    "fonts-dustin": (
        f"{_TT}/dustin/Domestic_Manners.ttf",
        f"{_TT}/dustin/It_wasn_t_me.ttf",
        f"{_TT}/dustin/Junkyard.ttf",
        f"{_TT}/dustin/Dustismo.ttf",
    ),
}


# rendered-digits-v2's further font faces: a handwriting face (Navilu: Kannada hand, Latin
# digits), a bold brush script, a dyslexia face (heavy bottoms, open shapes), a technical sans
# and a coding face (slashed 0, flat-topped 3)
MORE_FONTS: dict[str, tuple[str, ...]] = {
    "fonts-navilu": (f"{_TT}/Navilu/Navilu.ttf",),
    "fonts-lobster": (f"{_OT}/lobster/lobster.otf",),
    "fonts-opendyslexic": (
        f"{_OT}/opendyslexic/OpenDyslexic-Regular.otf",
        f"{_OT}/opendyslexic/OpenDyslexic-Italic.otf",
        f"{_OT}/opendyslexic/OpenDyslexic-Bold.otf",
    ),
    "fonts-jura": (f"{_OT}/jura/Jura-Regular.otf", f"{_OT}/jura/Jura-Bold.otf"),
    "fonts-monoid": (f"{_TT}/monoid/Monoid-Regular.ttf", f"{_TT}/monoid/Monoid-Italic.ttf"),
}
# rendered-digits-v6's further faces (issue 17, seventh round): six hands whose digits no v2
# face draws: two Malayalam handwriting faces with Latin digits (Chilanka, a felt pen; Karumbi, a
# slanted cursive), a hand-drawn face of mixed weights (Summersby), a straight-line hand (Stick:
# an angular 6, a flat-topped 3), a Korean pen hand with Latin digits (Un Pilgia) and a Japanese
# brush hand (Aoyagi Soseki). (v5 also had six lettering and type faces: docs/training.md.)
HAND_FONTS: dict[str, tuple[str, ...]] = {
    "fonts-smc-chilanka": (f"{_OT}/malayalam/Chilanka-Regular.otf",),
    "fonts-smc-karumbi": (f"{_TT}/malayalam/Karumbi-Regular.ttf",),
    "fonts-summersby": (f"{_TT}/summersby/summersby.ttf",),
    "fonts-stick": (f"{_TT}/stick/Stick-Regular.ttf",),
    "fonts-unfonts-extra": (f"{_TT}/unfonts-extra/UnPilgia.ttf",),
    "fonts-aoyagi-soseki": (f"{_TT}/aoyagi-soseki/aoyagi-soseki.ttf",),
}
# Debian package -> Hershey vector faces (``.jhf``: centre lines, drawn with a random pen):
# single-stroke sans (futural), script (scripts), serif (timesr), double-stroke sans (futuram),
# bold italic (timesib); the package's other ASCII files repeat these digits or are blackletter
STROKE_FONTS: dict[str, tuple[str, ...]] = {
    "hershey-fonts-data": tuple(
        str(HERSHEY_DIR / f"{name}.jhf")
        for name in ("futural", "scripts", "timesr", "futuram", "timesib")
    ),
}


def missing_packages(fonts: dict[str, tuple[str, ...]] = FONTS) -> list[str]:
    return sorted(pkg for pkg, paths in fonts.items() if not all(Path(p).is_file() for p in paths))


def _glyph(font: ImageFont.FreeTypeFont, digit: int, stroke: int) -> Image.Image:
    """The digit as an L mask (255 = ink) with room around it for rotation and slant."""
    left, top, right, bottom = (int(v) for v in font.getbbox(str(digit), stroke_width=stroke))
    pad = max(right - left, bottom - top) // 2 + 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text(
        (pad - left, pad - top), str(digit), fill=255, font=font, stroke_width=stroke
    )
    return mask


def _elastic(mask: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Simard et al.'s (2003) elastic distortion, the classic stand-in for the wobble of a hand:
    a random displacement field smoothed over 12% of the glyph, its standard deviation
    ``strength`` times the glyph's size."""
    ink = np.asarray(mask, dtype=np.float64)
    size = max(ink.shape)
    fields = [ndimage.gaussian_filter(rng.uniform(-1, 1, ink.shape), 0.12 * size) for _ in "xy"]
    rows, cols = np.meshgrid(np.arange(ink.shape[0]), np.arange(ink.shape[1]), indexing="ij")
    coords = [
        grid + field * (strength * size / max(float(field.std()), 1e-9))
        for grid, field in zip((rows, cols), fields, strict=True)
    ]
    warped = ndimage.map_coordinates(ink, coords, order=1, mode="constant")
    return Image.fromarray(np.clip(np.round(warped), 0, 255).astype(np.uint8), "L")


def _crossed_seven(strokes: Strokes) -> Strokes:
    """A 7 with the bar across its stem that many hands draw (continental Europe): a level
    stroke through the stem at mid-height, half the glyph's width long."""
    points = np.concatenate([np.asarray(s) for s in strokes])
    top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
    middle, half = (top + bottom) / 2, (float(np.ptp(points[:, 0])) or 1.0) / 4
    stem = max(strokes, key=lambda s: np.ptp(np.asarray(s)[:, 1]))  # the tallest stroke
    ys, xs = np.asarray(stem)[:, 1], np.asarray(stem)[:, 0]
    order = np.argsort(ys)
    x = float(np.interp(middle, ys[order], xs[order]))
    return [*strokes, [(x - half, middle), (x + half, middle)]]


def _stroke_glyph(rng: np.random.Generator, path: str, digit: int, height: int) -> Image.Image:
    """A Hershey face's digit drawn with a pen 3..16% of its height wide, by an unsteady hand;
    half of the 7s crossed."""
    strokes = digit_strokes(path, digit)
    if digit == 7 and rng.random() < 0.5:
        strokes = _crossed_seven(strokes)
    pen = max(1, round(height * float(rng.uniform(0.03, 0.16))))
    return draw_strokes(strokes, height, pen, rng, float(rng.uniform(0.0, 0.02)))


def render_one(rng: np.random.Generator, font_path: str, digit: int) -> Image.Image:
    """One digit image (greyscale, about 40..300 px a side), either polarity, as a camera or a
    drawing app gives it. ``font_path``: a font file (``FONTS``) or a Hershey ``.jhf`` file
    (``STROKE_FONTS``)."""
    height = int(rng.integers(32, 120))
    if font_path.endswith(".jhf"):
        mask = _stroke_glyph(rng, font_path, digit, height)
    else:
        font = ImageFont.truetype(font_path, size=height)
        mask = _glyph(font, digit, int(rng.integers(0, height // 20 + 1)))
    w, h = mask.size
    stretch = float(rng.uniform(0.8, 1.2))  # narrower or wider hands
    shear = float(rng.uniform(-0.25, 0.25))  # slant, either way
    mask = mask.transform(
        (w, h),
        Image.Transform.AFFINE,
        (1 / stretch, shear, -shear * h / 2 + w / 2 * (1 - 1 / stretch), 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    mask = mask.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    mask = _elastic(mask, rng, float(rng.uniform(0.0, 0.03)))
    box = mask.getbbox()
    if box is not None:
        mask = mask.crop(box)
    margin = rng.integers(4, 60, size=4)  # left, top, right, bottom: off-centre
    canvas = np.zeros((mask.height + margin[1] + margin[3], mask.width + margin[0] + margin[2]))
    canvas[margin[1] : margin[1] + mask.height, margin[0] : margin[0] + mask.width] = (
        np.asarray(mask, dtype=np.float64) / 255.0
    )
    ink_image = Image.fromarray(np.round(canvas * 255).astype(np.uint8), "L")
    blur = ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.03)) * height)
    ink = np.asarray(ink_image.filter(blur))
    ink = ink.astype(np.float64) / 255.0
    if rng.random() < 0.5:  # dark ink on paper lit unevenly
        paper = rng.uniform(170, 245) + np.linspace(0, 1, ink.shape[1])[None] * rng.uniform(-30, 30)
        grey = paper * (1 - ink) + rng.uniform(0, 100) * ink
    else:  # light strokes on a dark canvas
        grey = rng.uniform(0, 60) * (1 - ink) + rng.uniform(180, 255) * ink
    grey = grey + rng.normal(0.0, rng.uniform(0, 6), size=grey.shape)
    image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(60, 95)))
        image = Image.open(io.BytesIO(buffer.getvalue()))
    return image
