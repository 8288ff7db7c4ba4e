"""The demo page and the API docs in a real browser (Debian's Chromium, headless), against the
service in its own uvicorn process behind a path prefix, with no network beyond it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from tests.service.test_shipped_emoji import rendered
from tests.service_process import Server
from tests.ui.conftest import API_KEY, Session, open_session
from tests.ui.strokes import DIGIT_STROKES
from training.datasets.emoji import DEFAULT_FONT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# ReDoc 2's sidebar badge ("API docs by Redocly") is an <img> with a hard-coded CDN address and
# no option to turn it off; the page's CSP blocks it (Chromium logs that) and it hides itself.
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# Chromium logs every 4xx answer to fetch() as a console error. The service asks for an API
# key, and the page learns that as any client does: its first request is answered 401.
FIRST_401 = "status of 401 (Unauthorized) [http://127.0.0.1:{port}/jem/v1/models]"


def signed_in(s: Session, model: str = "digits-jem") -> Page:
    s.open()
    s.page.locator("#error").wait_for(state="visible")
    s.expected_console.append(FIRST_401.format(port=s.proxy.port))
    s.sign_in()
    page = s.page
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    page.wait_for_function(
        "m => document.querySelector('#model-info').textContent.startsWith(m + ':')", arg=model
    )
    return page


def draw(page: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Pointer strokes on the pad (mouse events, which the browser turns into pointer events)."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    for stroke in strokes:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.up()


def wait_result(page: Page) -> str:
    page.wait_for_selector("#result[data-state='done'], #result[data-state='error']")
    assert page.get_attribute("#result", "data-state") == "done", page.inner_text("#error")
    return page.inner_text("#verdict")


def test_api_key_errors_are_shown_in_words(session: Session, shots: Path) -> None:
    page = session.page
    session.open()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "needs an API key" in error.inner_text()
    assert "Enter the service's API key above" in error.inner_text()
    session.sign_in("not-the-key")
    page.wait_for_function("() => document.querySelector('#error').innerText.includes('valid')")
    assert "The API key is not valid for this service." in error.inner_text()
    page.screenshot(path=shots / "bad-api-key.png")
    session.sign_in(API_KEY)
    error.wait_for(state="hidden")
    assert page.locator("#model option").count() == 3
    session.check_clean(
        allowed_console=("status of 401 (Unauthorized)", "status of 403 (Forbidden)")
    )


def test_drawn_digits_are_read_right(session: Session, shots: Path) -> None:
    page = signed_in(session)
    read = {}
    for digit, strokes in DIGIT_STROKES.items():
        page.click("#clear")
        draw(page, strokes)
        verdict = wait_result(page)
        read[digit] = page.get_attribute("#verdict", "data-label")
        assert verdict.startswith(("Looks like", "This does not look")), verdict
        if digit == 7:
            page.screenshot(path=shots / "classify.png", full_page=True)
    right = sum(str(d) == label for d, label in read.items())
    assert right >= 8, read
    assert page.locator("#bars .bar").count() == 10
    # one gauge per OOD score, each against the model's in-distribution histogram
    assert page.locator("#scores .score svg").count() == 3
    session.check_clean()


def noise_png(seed: int = 0, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def test_noise_upload_is_out_of_distribution(session: Session, shots: Path) -> None:
    page = signed_in(session)
    page.set_input_files(
        "#file", files=[{"name": "noise.png", "mimeType": "image/png", "buffer": noise_png()}]
    )
    verdict = wait_result(page)
    assert page.get_attribute("#verdict", "data-ood") == "true"
    assert "does not look like anything the model was trained on" in verdict
    page.screenshot(path=shots / "noise-ood.png", full_page=True)
    session.check_clean()


def test_generate_shows_a_grid(session: Session, shots: Path) -> None:
    page = signed_in(session)
    page.select_option("#gen-class", "3")
    page.fill("#gen-n", "16")
    page.fill("#gen-seed", "0")
    page.click("#gen-run")
    page.wait_for_selector("#gen-grid[data-state='done'], #gen-grid[data-state='error']")
    assert page.get_attribute("#gen-grid", "data-state") == "done", page.inner_text("#error")
    images = page.locator("#gen-grid img")
    assert images.count() == 16
    assert all(w == 8 for w in images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
    status = page.inner_text("#gen-text")
    assert "16 samples" in status
    assert "seed 0" in status
    page.screenshot(path=shots / "generate.png", full_page=True)
    session.check_clean()


def test_docs_render_their_operations(session: Session, server: Server, shots: Path) -> None:
    page = session.page
    schema = page.context.request.get(f"{server.url}/openapi.json").json()
    operations = {(m.upper(), path) for path, ops in schema["paths"].items() for m in ops}
    ids = {op["operationId"] for ops in schema["paths"].values() for op in ops.values()}
    session.open("/docs")
    page.wait_for_selector(".opblock-summary")
    shown = page.locator(".opblock-summary").evaluate_all(
        """els => els.map(e => [e.querySelector('.opblock-summary-method').textContent,
                              e.querySelector('.opblock-summary-path').dataset.path])"""
    )
    assert {tuple(op) for op in shown} == operations
    assert "/jem" in page.inner_text(".servers")  # the OpenAPI servers entry: the prefix
    page.screenshot(path=shots / "docs.png")
    session.open("/redoc")
    page.wait_for_selector("[data-section-id*='/operation/']", state="attached")
    sections = page.locator("[data-section-id*='/operation/']").evaluate_all(
        "els => els.map(e => e.dataset.sectionId.split('/operation/')[1])"
    )
    assert set(sections) == ids
    page.screenshot(path=shots / "redoc.png")
    session.check_clean(allowed_console=(REDOC_BADGE,))


def test_phone_viewport(browser: Browser, server: Server, shots: Path) -> None:
    s = open_session(browser, server, (390, 844))
    try:
        page = signed_in(s)
        draw(page, DIGIT_STROKES[4])
        wait_result(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone: {width} px wide"
        page.screenshot(path=shots / "phone-390x844.png")
        page.screenshot(path=shots / "phone-full-page.png", full_page=True)
        s.check_clean()
    finally:
        s.page.context.close()


@pytest.mark.skipif(not DEFAULT_FONT.is_file(), reason="needs Debian's fonts-noto-color-emoji")
def test_emoji_model_asks_for_an_image_and_names_its_class(session: Session, shots: Path) -> None:
    """With emoji-jem the page asks for an image, not a digit, and a verdict reads
    "Looks like: <class>", never "Looks like a animals-nature"."""
    page = signed_in(session, "emoji-jem")
    prompt = page.inner_text("#classify-prompt")
    assert prompt.startswith("Pick or drop an image file of one of its"), prompt
    assert "digit" not in prompt
    blobs, _ = rendered(per_group=1)
    verdicts = []
    for i, blob in enumerate(blobs):
        page.click("#clear")
        page.set_input_files(
            "#file", files=[{"name": f"{i}.png", "mimeType": "image/png", "buffer": blob}]
        )
        verdicts.append(wait_result(page))
    held_in = [v for v in verdicts if v.startswith("Looks like")]
    assert held_in, verdicts  # rendered emoji as trained on: most are in-distribution
    for verdict in held_in:
        assert verdict.startswith("Looks like: "), verdict
    page.screenshot(path=shots / "classify-emoji.png", full_page=True)
    page.select_option("#model", "digits-jem")
    page.wait_for_function(
        "() => document.querySelector('#classify-prompt').textContent.startsWith('Draw a digit')"
    )
    session.check_clean()
