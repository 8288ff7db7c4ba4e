"""The emoji data set builder, on a five emoji per group (seconds)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.cli import main
from training.data import FolderOptions, load_dataset
from training.datasets.emoji import (
    DEFAULT_EMOJI_TEST,
    DEFAULT_FONT,
    EmojiBuildError,
    build_emoji_dataset,
    parse_emoji_test,
)

pytestmark = pytest.mark.skipif(
    not (DEFAULT_FONT.is_file() and DEFAULT_EMOJI_TEST.is_file()),
    reason="needs Debian's fonts-noto-color-emoji and unicode-data (make system-deps)",
)

SAMPLE = """\
# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face
# group: People & Body
# subgroup: hand-fingers-open
1F44B 1F3FD ; fully-qualified # 👋🏽 E1.0 waving hand: medium skin tone
"""


def test_parse_reads_groups_status_and_code_points() -> None:
    entries = parse_emoji_test(SAMPLE.splitlines())
    assert [e.group for e in entries] == ["Smileys & Emotion"] * 3 + ["People & Body"]
    assert entries[1].codepoints == (0x263A, 0xFE0F)
    assert entries[1].text == "\u263a\ufe0f"
    assert entries[2].status == "unqualified"
    assert entries[3].name == "waving hand: medium skin tone"
    assert entries[3].has_skin_tone
    assert not entries[0].has_skin_tone
    assert entries[0].file_stem == "1f600"


def test_parse_rejects_a_malformed_line() -> None:
    with pytest.raises(EmojiBuildError, match="cannot parse"):
        parse_emoji_test(["1F600 fully-qualified grinning"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("emoji") / "emoji"
    return out, build_emoji_dataset(out, limit=5, seed=3, command="pytest")


def test_build_writes_class_folders_ood_halves_and_a_record(
    built: tuple[Path, dict[str, object]],
) -> None:
    out, record = built
    classes = sorted(p.name for p in (out / "train").iterdir() if p.is_dir())
    assert classes == [
        "animals-nature",
        "objects",
        "people-body",
        "smileys-emotion",
        "symbols",
        "travel-places",
    ]
    for name in classes:
        files = sorted((out / "train" / name).glob("*.png"))
        assert len(files) == 5
        with Image.open(files[0]) as image:
            assert (image.mode, image.size) == ("RGB", (32, 32))
            pixels = np.asarray(image)
        assert pixels[0, 0].tolist() == [255, 255, 255]  # white background in the corner
        assert pixels.std() > 10  # a picture, not a blank square
    for group in ("food-drink", "activities", "flags"):
        val = {p.name for p in (out / "ood" / "val" / group).glob("*.png")}
        test = {p.name for p in (out / "ood" / "test" / group).glob("*.png")}
        assert (len(val), len(test)) == (2, 3)
        assert not val & test
    saved = json.loads((out / "train" / "dataset.json").read_text())
    assert saved == record
    assert saved["ood_split_seed"] == 3
    excluded = saved["excluded"]
    assert excluded["skin-tone variant"] > 1000
    assert excluded["component"] > 0
    # no skin-tone code point (U+1F3FB..U+1F3FF) in any file name
    names = [p.stem for p in out.rglob("*.png")]
    assert not [n for n in names if any(t in n for t in ("1f3fb", "1f3fc", "1f3fd", "1f3fe"))]


def test_record_carries_the_debian_package_versions(
    built: tuple[Path, dict[str, object]],
) -> None:
    sources = built[1]["sources"]
    assert isinstance(sources, dict)
    for key, package in (("font", "fonts-noto-color-emoji"), ("emoji_test", "unicode-data")):
        query = ["dpkg-query", "-W", "-f=${Version}", package]
        expected = subprocess.run(query, capture_output=True, text=True, check=True).stdout
        assert sources[key]["version"] == expected
        assert len(sources[key]["sha256"]) == 64


def test_the_folder_data_set_splits_it_and_keeps_the_record(
    built: tuple[Path, dict[str, object]],
) -> None:
    out, record = built
    data = load_dataset("folder", root=out / "train", seed=0, val_fraction=0.25, test_fraction=0.25)
    assert data.class_names[0] == "animals-nature"
    assert sum(data.split["sizes"].values()) == 30
    assert data.split["source"] == record
    again = load_dataset(
        "folder", root=out / "train", seed=0, val_fraction=0.25, test_fraction=0.25
    )
    assert again.split["indices_sha256"] == data.split["indices_sha256"]


def test_build_is_deterministic(tmp_path: Path, built: tuple[Path, dict[str, object]]) -> None:
    build_emoji_dataset(tmp_path / "again", limit=5, seed=3, command="pytest")
    first = sorted(p.relative_to(built[0]) for p in built[0].rglob("*.png"))
    second = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.png"))
    assert first == second
    a, b = built[0] / first[0], tmp_path / "again" / first[0]
    assert a.read_bytes() == b.read_bytes()


def test_cli_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, built: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-font.ttf"
    assert main(["data", "emoji", "--out", str(tmp_path / "x"), "--font", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing} not found: install Debian's fonts-noto-color-emoji")
    assert err.count("\n") == 1
    assert main(["data", "emoji", "--out", str(built[0])]) == 2
    assert "already holds a data set" in capsys.readouterr().err
    assert main(["data", "emoji", "--out", str(tmp_path / "y"), "--held-out", "Nope"]) == 2
    assert "unknown held-out groups ['Nope']" in capsys.readouterr().err


def test_a_larger_size_keeps_the_emoji_and_the_split(
    tmp_path: Path, built: tuple[Path, dict[str, object]]
) -> None:
    # docs/emoji.md, ninth round: a 48-px data set is compared with the 32-px one split for split
    out = tmp_path / "emoji48"
    assert (
        main(["data", "emoji", "--out", str(out), "--size", "48", "--limit", "5", "--seed", "3"])
        == 0
    )
    small, large = built[0], out
    assert sorted(p.relative_to(small) for p in small.rglob("*.png")) == sorted(
        p.relative_to(large) for p in large.rglob("*.png")
    )
    with Image.open(next((large / "train" / "symbols").glob("*.png"))) as image:
        assert image.size == (48, 48)
    a, b = (
        load_dataset(
            "folder",
            root=root / "train",
            seed=0,
            val_fraction=0.25,
            test_fraction=0.25,
            folder=FolderOptions(image_size=(side, side)),
        )
        for root, side in ((small, 32), (large, 48))
    )
    assert b.val.inputs().shape[-2:] == (48, 48)
    assert a.split["indices_sha256"] == b.split["indices_sha256"]
    assert torch.equal(a.val.labels, b.val.labels)
    # the same pictures: each 48-px image shrunk to 32 px is close to its 32-px rendering
    shrunk = torch.nn.functional.interpolate(b.val.inputs(), size=(32, 32), mode="area")
    assert (shrunk - a.val.inputs()).abs().mean(dim=(1, 2, 3)).max() < 0.15
    assert b.split["source"]["image"]["size"] == 48  # what the manifest records
    assert a.split["source"]["image"]["size"] == 32
