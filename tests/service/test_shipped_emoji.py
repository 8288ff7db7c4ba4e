"""The default service serves emoji-jem beside digits-jem: real emoji PNGs in, labels out.

Runs on model_store/models and Debian's emoji font; skipped until both exist.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFont

from model_store import ModelStore, default_root
from service import Settings
from tests.service.conftest import serve
from training.datasets.emoji import (
    DEFAULT_EMOJI_TEST,
    DEFAULT_FONT,
    STRIKE_SIZE,
    parse_emoji_test,
    render_emoji,
    slug,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(
        "emoji-jem" not in ModelStore(default_root()).list_models() or not DEFAULT_FONT.is_file(),
        reason="needs the shipped emoji-jem and Debian's fonts-noto-color-emoji/unicode-data",
    ),
]


def rendered(per_group: int) -> tuple[list[bytes], list[str]]:
    """The first ``per_group`` base emoji of every group, as the data set builder draws them."""
    font = ImageFont.truetype(str(DEFAULT_FONT), STRIKE_SIZE)
    entries = parse_emoji_test(DEFAULT_EMOJI_TEST.read_text(encoding="utf-8").splitlines())
    blobs, groups = [], []
    counts: dict[str, int] = {}
    for e in entries:
        if e.status != "fully-qualified" or e.has_skin_tone or e.group == "Component":
            continue
        if counts.get(e.group, 0) >= per_group:
            continue
        pixels = render_emoji(font, e.text, 32)
        if pixels is None:
            continue
        counts[e.group] = counts.get(e.group, 0) + 1
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
        groups.append(slug(e.group))
    return blobs, groups


async def test_default_service_labels_emoji_with_emoji_jem() -> None:
    settings = Settings(model_store=default_root(), max_wait_ms=2.0)  # default models
    assert settings.models == ["digits-jem", "emoji-jem"]
    blobs, groups = rendered(per_group=7)  # 63 images: one request (limit 64)
    async with serve(settings) as client:
        listed = (await client.get("/v1/models")).json()
        assert {"digits-jem", "emoji-jem"} <= {m["name"] for m in listed["models"]}
        files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]
        r = await client.post("/v1/models/emoji-jem/predict", files=files)
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
    names = ModelStore(default_root()).manifest("emoji-jem").class_names
    labels = [p["class_name"] for p in predictions]
    held_in = [(label, g) for label, g in zip(labels, groups, strict=True) if g in names]
    accuracy = float(np.mean([label == g for label, g in held_in]))
    print(f"emoji-jem on {len(held_in)} rendered emoji of its classes: {accuracy:.2f}")
    # 42 emoji from every split (most were trained on): far above chance (1/6)
    assert accuracy >= 0.5


async def test_transparent_uploads_are_read_on_white_as_the_glyphs_were_drawn() -> None:
    blobs, _ = rendered(per_group=4)
    transparent = []
    for blob in blobs:  # the same pictures with their white background made transparent
        rgba = np.asarray(Image.open(io.BytesIO(blob)).convert("RGBA")).copy()
        rgba[(rgba[..., :3] == 255).all(axis=-1), 3] = 0
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        transparent.append(buffer.getvalue())
    settings = Settings(models=["emoji-jem"], model_store=default_root(), max_wait_ms=2.0)
    answers = []
    async with serve(settings) as client:
        for batch in (blobs, transparent):
            files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(batch)]
            r = await client.post("/v1/models/emoji-jem/predict", files=files)
            assert r.status_code == 200, r.text
            answers.append(r.json()["predictions"])
    for opaque, clear in zip(*answers, strict=True):
        assert clear["class_name"] == opaque["class_name"]
        assert clear["energy"] == pytest.approx(opaque["energy"], abs=1e-3)
