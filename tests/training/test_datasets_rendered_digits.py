"""The rendered-digits training source (training/datasets/rendered_digits.py), on a few images
per class (seconds)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jem.imaging import to_pixels
from tests.rendered_digits import TEST_FONTS, VALIDATION_FONTS, font_package
from training.config import ConfigError, TrainConfig
from training.data import DIGITS_SPEC, DatasetError, load_dataset
from training.datasets.digit_rendering import (
    FONTS,
    HAND_FONTS,
    MORE_FONTS,
    STROKE_FONTS,
    missing_packages,
    render_one,
)
from training.datasets.npm_fonts import FONTS_DIR, NPM_HANDS, PACKAGES
from training.datasets.provenance import file_sha256
from training.datasets.rendered_digits import (
    NAME,
    RenderedDigits,
    add_to_training_split,
    build_rendered_digits,
    load_rendered_digits,
)

pytestmark = pytest.mark.skipif(
    bool(missing_packages({**FONTS, **MORE_FONTS, **HAND_FONTS, **STROKE_FONTS})),
    reason="needs the training font packages (make system-deps)",
)


def _family(path: str) -> str:
    """A font's family as Debian installs it: its folder under /usr/share/fonts/*/."""
    return Path(path).relative_to("/usr/share/fonts").parts[1]


def test_the_fonts_are_disjoint_from_both_acceptance_sets() -> None:
    acceptance = {**TEST_FONTS, **VALIDATION_FONTS}
    held_out_packages = {font_package(name) for name in acceptance}
    assert not (set(FONTS) | set(MORE_FONTS) | set(HAND_FONTS) | set(STROKE_FONTS)) & (
        held_out_packages
    )
    held_out_families = {_family(path) for path in acceptance.values()}
    fonts = {**FONTS, **MORE_FONTS, **HAND_FONTS}
    ours = {_family(path) for paths in fonts.values() for path in paths}
    assert not ours & held_out_families
    assert len(ours) >= 10


def _normalised(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def test_the_npm_faces_are_vendored_as_recorded_and_none_is_an_acceptance_family() -> None:
    """Every vendored file is the one VENDOR.json hashes, pinned to PACKAGES' version, with its
    licence; no face's family (its name table, as FreeType reads it) is an acceptance set's, nor
    a Debian face's already in the sources."""
    from PIL import ImageFont

    record = json.loads((FONTS_DIR / "VENDOR.json").read_text())
    assert {name: entry["version"] for name, entry in record.items()} == {
        f"@fontsource/{family}": version for family, version in PACKAGES
    }
    for entry in record.values():
        assert entry["license"] in ("OFL-1.1", "Apache-2.0"), entry
        assert entry["integrity"].startswith("sha512-")
        for filename, digest in entry["files"].items():
            assert file_sha256(FONTS_DIR / entry["directory"] / filename) == digest
    assert {p.name for p in FONTS_DIR.iterdir() if p.is_dir()} == {
        e["directory"] for e in record.values()
    }

    def family(path: str) -> str:
        return _normalised(ImageFont.truetype(path, size=12).getname()[0] or "")

    acceptance = {family(path) for path in {**TEST_FONTS, **VALIDATION_FONTS}.values()}
    debian = {family(p) for paths in {**FONTS, **MORE_FONTS, **HAND_FONTS}.values() for p in paths}
    npm = {family(paths[0]) for paths in NPM_HANDS.values()}
    assert len(npm) == len(NPM_HANDS) == 95
    assert not npm & acceptance
    assert not npm & debian
    assert not {_normalised(key.removeprefix("npm:@fontsource/")) for key in NPM_HANDS} & {
        _normalised(font_package(name).removeprefix("fonts-"))
        for name in {**TEST_FONTS, **VALIDATION_FONTS}
    }


def test_v7_adds_the_npm_faces_after_v6s_font_faces(tmp_path: Path) -> None:
    from training.datasets import rendered_digits

    v6_faces = rendered_digits._faces("rendered-digits-v6")
    npm = [paths[0] for paths in NPM_HANDS.values()]
    assert rendered_digits._faces("rendered-digits-v7") == [
        *[path for path in v6_faces if not path.endswith(".jhf")],
        *npm,
        *[path for path in v6_faces if path.endswith(".jhf")],
    ]
    v7 = load_rendered_digits(2, seed=3, cache=tmp_path, source="rendered-digits-v7")
    fonts = v7.record["fonts"]
    assert fonts["npm:@fontsource/caveat"]["version"] == dict(PACKAGES)["caveat"]
    assert set(fonts) == set(FONTS) | set(MORE_FONTS) | set(HAND_FONTS) | set(NPM_HANDS) | set(
        STROKE_FONTS
    )
    assert TrainConfig(extra_train="rendered-digits-v7", extra_train_per_class=1)


@pytest.fixture(scope="module")
def three() -> RenderedDigits:
    return build_rendered_digits(3, seed=3)


def test_a_build_is_seeded_and_a_smaller_one_is_its_prefix(three: RenderedDigits) -> None:
    small = build_rendered_digits(2, seed=3)
    prefix = three.prefix(2)
    assert np.array_equal(prefix.images, small.images)
    assert prefix.record == small.record
    assert small.images.shape[1:] == (8, 8, 1)
    assert small.images.dtype == np.uint8
    assert np.array_equal(np.bincount(small.labels, minlength=10), [2] * 10)
    assert not np.array_equal(build_rendered_digits(1, seed=4).images, three.prefix(1).images)
    record = small.record
    assert (record["name"], record["seed"], record["count"]) == (NAME, 3, 20)
    assert set(record["fonts"]) == set(FONTS)
    # on the data set's scale: block counts 0..16 stored as round(count * 255 / 16)
    levels = {round(k * 255 / 16) for k in range(17)}
    assert set(np.unique(three.images).tolist()) <= levels


@pytest.mark.parametrize("normalization", ["digits-v1", "digits-v2"])
def test_the_pixels_are_the_ones_the_service_computes(normalization: str) -> None:
    """The builder calls `normalize` on the rendered greyscale image: what `to_pixels` (the
    service's decoding path) gives for the same image sent as a file."""
    from dataclasses import replace

    from jem.normalize import normalize

    spec = replace(DIGITS_SPEC, normalization=normalization)
    rng = np.random.default_rng(0)
    faces = [path for paths in FONTS.values() for path in paths]
    for i in range(3):
        image = render_one(rng, faces[i * 11], i)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        served = to_pixels(Image.open(io.BytesIO(buffer.getvalue())), spec)
        built = np.asarray(to_pixels(image, spec))
        assert np.array_equal(served, built)
        direct = normalize(normalization, np.asarray(image), 8, 8)
        assert direct is not None
        assert np.array_equal(direct[..., None], served)
    # and the builder's own images are those pixels (the first image of round 0 is digit 0)
    one = build_rendered_digits(1, seed=5, normalization=normalization)
    first = render_one(np.random.default_rng([5, 17]), faces[0], 0)
    assert np.array_equal(one.images[0], to_pixels(first, spec))
    assert one.record["normalization"] == normalization


def test_only_the_training_split_grows(
    tmp_path: Path, three: RenderedDigits, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.datasets import rendered_digits

    monkeypatch.setattr(
        rendered_digits, "build_rendered_digits", lambda n, seed, norm, source: three.prefix(n)
    )
    digits = load_dataset("digits")
    extended = add_to_training_split(digits, 3, seed=3, cache=tmp_path)
    assert len(extended.train) == len(digits.train) + 30
    assert torch.equal(extended.train.images[len(digits.train) :], torch.from_numpy(three.images))
    for part in ("val", "test"):
        assert torch.equal(getattr(extended, part).images, getattr(digits, part).images)
        assert torch.equal(getattr(extended, part).labels, getattr(digits, part).labels)
    assert extended.split["indices_sha256"] == digits.split["indices_sha256"]
    assert extended.split["extra_train"] == {**three.record, "real_repeat": 1}
    # cached beside its record; a cached larger build serves a smaller one without rendering
    assert json.loads((tmp_path / f"{NAME}-digits-v1-3-3.json").read_text()) == three.record
    monkeypatch.setattr(rendered_digits, "build_rendered_digits", None)
    again = load_rendered_digits(2, seed=3, cache=tmp_path)
    assert np.array_equal(again.images, three.prefix(2).images)
    assert again.record == three.prefix(2).record
    # the data set's own images repeated, so many rendered ones do not swamp them
    doubled = add_to_training_split(digits, 2, seed=3, cache=tmp_path, real_repeat=2)
    assert len(doubled.train) == 2 * len(digits.train) + 20
    assert torch.equal(
        doubled.train.images[len(digits.train) : 2 * len(digits.train)], digits.train.images
    )


def test_other_data_sets_and_bad_settings_are_refused(tmp_path: Path) -> None:
    digits = load_dataset("digits")
    from dataclasses import replace

    from jem import InputSpec

    rgb = replace(digits, spec=InputSpec(channels=3, height=32, width=32, color_mode="RGB"))
    with pytest.raises(DatasetError, match="digits data set only"):
        add_to_training_split(rgb, 1, cache=tmp_path)
    with pytest.raises(ConfigError, match="extra_train_per_class"):
        TrainConfig(extra_train="rendered-digits-v1")
    with pytest.raises(ValueError, match="per_class"):
        build_rendered_digits(0)


def test_a_run_trains_on_them_and_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_store import ModelStore
    from tests.training._tiny import tiny_config
    from training.trainer import Trainer

    monkeypatch.chdir(tmp_path)  # the cache goes to ./data/cache
    config = tiny_config(
        "extra_train=rendered-digits-v1",
        "extra_train_per_class=1",
        "extra_train_real_repeat=2",
        "estimate_iters=0",
    )
    trainer = Trainer(config, name="r", store=ModelStore(tmp_path / "store"), progress=False)
    digits = load_dataset("digits")
    assert len(trainer.data.train) == 2 * len(digits.train) + 10
    assert torch.equal(trainer.data.test.images, digits.test.images)
    ref = trainer.fit().ref
    assert ref is not None
    split = ModelStore(tmp_path / "store").manifest(ref).training["split"]
    assert split["sizes"]["train"] == len(digits.train)  # the data set's own split, as before
    assert split["indices_sha256"] == digits.split["indices_sha256"]
    assert (split["extra_train"]["name"], split["extra_train"]["count"]) == (NAME, 10)
    assert split["extra_train"]["real_repeat"] == 2
    # the preset's normalisation: in the manifest, and the one the rendered digits went through
    assert split["extra_train"]["normalization"] == "digits-v3"
    spec = ModelStore(tmp_path / "store").manifest(ref).input_spec
    assert spec.normalization == "digits-v3"
    assert (tmp_path / "data" / "cache" / f"{NAME}-digits-v3-1-0.npz").is_file()


def test_a_normalisation_of_its_own_is_kept_apart(
    tmp_path: Path, three: RenderedDigits, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.datasets import rendered_digits
    from training.datasets.normalization import with_normalization

    digits = load_dataset("digits")
    v2 = with_normalization(digits, "digits-v2")
    assert v2.spec.normalization == v2.train.spec.normalization == "digits-v2"
    assert torch.equal(v2.train.images, digits.train.images)  # the data set's pixels as they are
    seen: list[str] = []

    def build(n: int, seed: int, normalization: str, source: str) -> RenderedDigits:
        seen.append(normalization)
        return three.prefix(n)

    monkeypatch.setattr(rendered_digits, "build_rendered_digits", build)
    add_to_training_split(digits, 2, seed=3, cache=tmp_path)
    add_to_training_split(v2, 2, seed=3, cache=tmp_path)  # a v1 build in the cache does not serve
    assert seen == ["digits-v1", "digits-v2"]
    assert (tmp_path / f"{NAME}-digits-v2-2-3.npz").is_file()
    with pytest.raises(DatasetError, match="unknown normalization"):
        with_normalization(digits, "digits-v0")
    with pytest.raises(ConfigError, match="digits data set only"):
        TrainConfig(dataset="folder", normalization="digits-v2")


def test_v2_adds_pen_stroke_faces_and_keeps_v1_as_it_was(tmp_path: Path) -> None:
    """``rendered-digits-v2``: v1's faces plus the Hershey faces, four times each, after them (the
    renderer of a stroke face is tested below); v1's images are the ones v1 always gave; the
    cache keeps the two apart."""
    from training.datasets import rendered_digits

    v1 = load_rendered_digits(1, seed=3, cache=tmp_path)
    v2 = load_rendered_digits(3, seed=3, cache=tmp_path, source="rendered-digits-v2")
    assert np.array_equal(v1.images, build_rendered_digits(1, seed=3).images)
    assert v2.record["name"] == "rendered-digits-v2"
    assert set(v2.record["fonts"]) == set(FONTS) | set(MORE_FONTS) | set(STROKE_FONTS)
    assert v2.record["fonts"]["hershey-fonts-data"]["version"]
    faces = rendered_digits._faces("rendered-digits-v2")
    strokes = [path for path in faces if path.endswith(".jhf")]
    assert len(strokes) == 4 * len(STROKE_FONTS["hershey-fonts-data"])
    assert faces[: len(rendered_digits._faces(NAME))] == rendered_digits._faces(NAME)
    # v1's font faces come first in the same order: the first rounds are v1's
    assert np.array_equal(v2.prefix(1).images, v1.images)
    assert np.array_equal(np.bincount(v2.labels, minlength=10), [3] * 10)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        f"{NAME}-digits-v1-1-3.npz",
        "rendered-digits-v2-digits-v1-3-3.npz",
    ]
    with pytest.raises(DatasetError, match="unknown rendered digits"):
        build_rendered_digits(1, source="rendered-digits-v0")


def test_v6_adds_hand_faces_after_v2s_font_faces(tmp_path: Path) -> None:
    """``rendered-digits-v6``: v2's font faces, then the faces of HAND_FONTS, then the Hershey
    faces four times each, as v2 weighs them; recorded and cached under its own name."""
    from training.datasets import rendered_digits

    v2_faces = rendered_digits._faces("rendered-digits-v2")
    hands = [path for paths in HAND_FONTS.values() for path in paths]
    assert rendered_digits._faces("rendered-digits-v6") == [
        *[path for path in v2_faces if not path.endswith(".jhf")],
        *hands,
        *[path for path in v2_faces if path.endswith(".jhf")],
    ]
    assert not set(hands) & set(v2_faces)
    v6 = load_rendered_digits(2, seed=3, cache=tmp_path, source="rendered-digits-v6")
    assert v6.record["name"] == "rendered-digits-v6"
    every = set(FONTS) | set(MORE_FONTS) | set(HAND_FONTS) | set(STROKE_FONTS)
    assert set(v6.record["fonts"]) == every
    assert np.array_equal(np.bincount(v6.labels, minlength=10), [2] * 10)
    assert [p.name for p in tmp_path.glob("*.npz")] == ["rendered-digits-v6-digits-v1-2-3.npz"]
    assert TrainConfig(extra_train="rendered-digits-v6", extra_train_per_class=1)


@pytest.mark.parametrize("faces", [HAND_FONTS, NPM_HANDS], ids=["debian-hands", "npm-hands"])
def test_every_hand_face_draws_every_digit(faces: dict[str, tuple[str, ...]]) -> None:
    """Each face of HAND_FONTS and NPM_HANDS has its own glyph for 0..9 (not the font's
    missing-glyph box), and a rendered digit of each keeps its ink through the service's
    normalisation."""
    from PIL import ImageDraw, ImageFont

    from jem.normalize import normalize

    rng = np.random.default_rng(5)
    paths = [path for paths in faces.values() for path in paths]
    for i, path in enumerate(paths):
        font = ImageFont.truetype(path, size=48)

        def ink(text: str, font: ImageFont.FreeTypeFont = font) -> bytes:
            image = Image.new("L", (96, 96))
            ImageDraw.Draw(image).text((8, 8), text, fill=255, font=font)
            return image.tobytes()

        missing = ink("\U0010fffd")  # a private-use code point no face draws
        assert all(ink(str(digit)) != missing for digit in range(10)), path
        pixels = normalize("digits-v2", np.asarray(render_one(rng, path, i % 10)), 8, 8)
        assert pixels is not None
        assert pixels.max() > 0, path


def test_a_stroke_face_digit_goes_through_the_service_normalisation() -> None:
    from jem.normalize import normalize

    rng = np.random.default_rng(0)
    for i, path in enumerate(STROKE_FONTS["hershey-fonts-data"]):
        image = render_one(rng, path, (i * 3) % 10)
        assert image.mode == "L"
        assert min(image.size) >= 40
        assert max(image.size) <= 400
        pixels = normalize("digits-v2", np.asarray(image), 8, 8)
        assert pixels is not None
        assert pixels.max() > 0


def test_the_by_font_table_counts_each_cell(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tests.rendered_digits --by-font`: per font and digit, the images read right
    and the commonest wrong label, the error analysis of docs/training.md."""
    from tests.rendered_digits import RenderedDigit, _print_by_font

    items = [RenderedDigit(d, f, "photo", b"") for f in ("a", "b") for d in range(10) for _ in "xy"]
    got = np.array([item.label for item in items])
    got[[8, 9]] = [9, 7]  # font a's two 4s: read as 9 and 7
    got[20 + 13] = 1  # one of font b's 6s read as 1
    _print_by_font(items, got)
    rows = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert rows["a"].split() == ["2", "2", "2", "2", "0(7)", "2", "2", "2", "2", "2"]
    assert rows["b"].split() == ["2", "2", "2", "2", "2", "2", "1(1)", "2", "2", "2"]


def test_the_neighbours_table_names_the_nearest_training_digits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m tests.rendered_digits --neighbours`: for a cell read right at most half the
    time, the labels of its 5 nearest training digits and the rank of the nearest of its own
    class (docs/training.md, "Eighth round"); cells read right more often are not listed."""
    from tests.rendered_digits import RenderedDigit, _print_neighbours

    train = np.array([[0.0, 0.0]] * 3 + [[10.0, 0.0]] * 3 + [[0.0, 10.0]] * 3)
    train_labels = np.array([0] * 3 + [6] * 3 + [4] * 3)
    items = [RenderedDigit(6, "a", "photo", b""), RenderedDigit(6, "a", "canvas", b"")]
    items += [RenderedDigit(4, "a", "photo", b""), RenderedDigit(4, "a", "canvas", b"")]
    pixels = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 9.0], [0.0, 8.0]])  # the 6s look like 0s
    _print_neighbours(items, np.array([0, 0, 4, 4]), pixels, train, train_labels)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  a 6: 5 nearest training digits' labels {0: 6, 6: 4}; nearest 6 at rank 3 (median)"
    ]
