"""Issue 14's frictions, one test (or more) each: a user's own image folder through training."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jem import InputSpec, ReplayBuffer
from model_store import ModelStore
from tests.service_process import REPO
from tests.training._shapes import make_shapes_folder
from tests.training._tiny import tiny_config
from training.build import buffer_capacity, compact_buffer, resolve_backbone
from training.cli import main
from training.config import TrainConfig
from training.data import FolderOptions, load_dataset
from training.estimate import WARN_AFTER_S, Estimate, estimate_run
from training.presets import PRESETS
from training.samples import class_grid_png
from training.trainer import Trainer

# ----------------------------------------------------------------- 2: folder data settings


def _grey_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (48, 64), dtype=np.uint8)  # 64 wide, 48 high
            Image.fromarray(pixels, "L").save(root / name / f"{i}.png")
    return root


def test_folder_settings_become_the_input_spec_and_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _grey_folder(tmp_path / "grey")
    with caplog.at_level(logging.INFO, logger="training"):
        auto = load_dataset("folder", root=root)
    assert auto.spec.shape == (1, 32, 32)  # every image greyscale: "auto" keeps one channel
    assert "12 images in 2 classes; sizes 64x48 (12); modes L (12)" in caplog.text
    assert "converting every image to 32x32 (HxW) L, bilinear resampling" in caplog.text
    options = FolderOptions(image_size=(48, 64), color_mode="RGB", resample="nearest")
    chosen = load_dataset("folder", root=root, folder=options)
    assert chosen.spec == InputSpec(3, 48, 64, "RGB", resample="nearest")
    assert chosen.train.images.shape[1:] == (48, 64, 3)


def test_background_decides_what_transparency_becomes(tmp_path: Path) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=5, size=16)
    white = load_dataset("folder", root=root, folder=FolderOptions(background="white"))
    black = load_dataset("folder", root=root, folder=FolderOptions(background="black"))
    corner = (slice(None), 0, 0)  # shapes never reach the corners: transparent there
    assert (white.train.images[corner] == 255).all()
    assert (black.train.images[corner] == 0).all()
    assert white.spec.background == "white"


def test_the_config_keys_reach_the_manifest(tmp_path: Path, one_thread: None) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=5, size=16)
    config = tiny_config(
        "dataset=folder",
        "normalization=",  # the digits preset's step is for the digits data set only
        f"data_root={root}",
        "image_size=12",
        "background=#ff00ff",
        "resample=box",
        "estimate_iters=0",
    )
    ref = Trainer(config, name="s", store=ModelStore(tmp_path / "store"), progress=False).fit().ref
    assert ref is not None
    spec = ModelStore(tmp_path / "store").manifest(ref).input_spec.model_dump()
    assert (spec["height"], spec["width"], spec["background"], spec["resample"]) == (
        12,
        12,
        "#ff00ff",
        "box",
    )


# ----------------------------------------------------------------- 1, 3: estimate, backbones


def test_auto_backbone_follows_the_image_size() -> None:
    digits = load_dataset("digits")
    assert resolve_backbone(TrainConfig(), digits)[0] == "digits_cnn"
    shapes_like = type(digits)(
        "x", digits.train, digits.val, digits.test, ["a", "b"], InputSpec(3, 32, 32, "RGB")
    )
    name, kwargs = resolve_backbone(TrainConfig(), shapes_like)
    assert (name, kwargs["depth"], kwargs["widen_factor"], kwargs["in_channels"]) == (
        "wrn",
        10,
        2,
        3,
    )


def test_backbone_table_in_the_docs_matches_the_code() -> None:
    text = (REPO / "docs" / "training.md").read_text()
    rows = re.findall(r"^\| `(\w+)\((.*?)\)` \| ([\d,]+) \|", text, flags=re.M)
    assert len(rows) >= 4
    from jem import create_backbone

    for name, args, params in rows:
        kwargs = {k: int(v) for k, v in (a.split("=") for a in args.split(", "))}
        if name == "digits_cnn":
            kwargs["image_size"] = 32
        model = create_backbone(name, in_channels=3, num_classes=6, **kwargs)
        assert sum(p.numel() for p in model.parameters()) == int(params.replace(",", "")), name


def test_the_estimate_leaves_the_run_untouched(tmp_path: Path, one_thread: None) -> None:
    runs = []
    for iters in (0, 2):
        config = tiny_config(f"estimate_iters={iters}", "iterations=4", "checkpoint_every=100")
        trainer = Trainer(config, name="t", store=ModelStore(tmp_path / str(iters)), progress=False)
        trainer.fit()
        runs.append(trainer.model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_a_long_run_is_warned_about(tmp_path: Path, one_thread: None) -> None:
    config = tiny_config("iterations=100000")
    trainer = Trainer(config, name="t", store=ModelStore(tmp_path), progress=False)
    estimate = estimate_run(trainer, 1)
    assert estimate.iterations == 100000
    assert estimate.seconds_per_iteration > 0
    long = Estimate(WARN_AFTER_S, 2, 1, "cpu", 1, ("fewer iterations",))
    assert long.warning() is not None
    assert "fewer iterations" in long.warning()  # type: ignore[operator]
    assert Estimate(0.01, 10, 1, "cpu", 1).warning() is None
    assert long.describe().endswith("x 2 iterations = about 60 min")


# ----------------------------------------------------------------- 4: one-line errors


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "Traceback" not in err
    return err


def test_user_mistakes_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "store")]
    train = ["train", "--preset", "digits-jem", *store, "--set", "estimate_iters=0"]
    assert "unknown backbone 'resnet9'" in _error(capsys, *train, "--set", "backbone=resnet9")
    bad = _error(capsys, *train, "--set", 'backbone_kwargs={"widht": 3}')
    assert "backbone 'digits_cnn'" in bad
    assert "widht" in bad
    folder = ["train", "--preset", "folder-jem", *store, "--set", "estimate_iters=0"]
    assert "needs a data root" in _error(capsys, *folder)
    assert "does not exist" in _error(capsys, *folder, "--data-root", str(tmp_path / "nope"))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "one.png")
    assert "move them into one folder per class" in _error(
        capsys, *folder, "--data-root", str(flat)
    )
    shapes = make_shapes_folder(tmp_path / "shapes", per_class=6, size=12)
    for extra in sorted((shapes / "square").iterdir())[2:]:
        extra.unlink()
    assert "'square' (2)" in _error(capsys, *folder, "--data-root", str(shapes))
    assert "no model named 'nothing-here'" in _error(capsys, "calibrate", "nothing-here", *store)


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown backbone"):
        main(
            [
                "-v",
                "train",
                "--preset",
                "digits-jem",
                "--store",
                str(tmp_path),
                "--set",
                "backbone=x",
            ]
        )


# ----------------------------------------------------------------- 7: the replay buffer


def test_buffer_is_sized_for_the_data_and_saved_compactly() -> None:
    digits = load_dataset("digits")
    assert buffer_capacity(TrainConfig(), digits) == len(digits.train)
    assert buffer_capacity(TrainConfig(buffer_size=123), digits) == 123
    small = digits.train.subset(torch.arange(30))
    tiny = type(digits)("x", small, small, small, digits.class_names, digits.spec)
    assert buffer_capacity(TrainConfig(), tiny) == 50 * 10
    assert all(PRESETS[p]["buffer_size"] == 10000 for p in ("digits-jem", "cifar10-wrn"))
    buffer = ReplayBuffer(20, (3, 4, 4), 2, __import__("jem").UniformInit())
    state = compact_buffer(buffer.state_dict())
    assert state["x"].dtype == torch.float16
    restored = ReplayBuffer.from_state_dict(state)
    assert restored.x.dtype == torch.float32
    assert torch.allclose(restored.x, buffer.x, atol=1e-3)


# ----------------------------------------------------------------- 8: --help before torch


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_answers_without_importing_torch(argv: list[str]) -> None:
    code = (
        "import sys\nfrom training.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m training" in done.stdout
    assert "--store" in done.stdout or "COMMAND" in done.stdout


def test_train_takes_the_shared_options() -> None:
    from training.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--preset", "folder-jem", "--store", "s", "--data-root", "d", "--threads", "2"]
    )
    assert (args.store, args.data_root, args.threads) == ("s", "d", 2)


# ----------------------------------------------------------------- 9: labelled grids


def test_sample_grid_has_one_row_per_class() -> None:
    x = torch.rand(6 * 10, 3, 8, 8) * 2 - 1
    y = torch.arange(6).repeat_interleave(10)
    names = [f"class-{k}" for k in range(6)]
    with Image.open(__import__("io").BytesIO(class_grid_png(x, y, names))) as grid:
        assert grid.height == 6 * 34 + 2  # six rows of 32 px cells (8 px x4) and 2 px gaps
        assert grid.width > 10 * 34  # ten cells per row, and the labels' column


# ----------------------------------------------------------------- 10: the docs say it right


def test_docs_name_the_presets_with_the_gradient_penalty() -> None:
    text = " ".join((REPO / "docs" / "training.md").read_text().split())
    sentence = re.search(r"on \(0\.1\) in the presets (.*?), off \(0\) in all others", text)
    assert sentence is not None
    named = set(re.findall(r"`([\w+-]+)`", sentence.group(1)))
    assert named == {p for p, v in PRESETS.items() if v.get("grad_penalty", 0) > 0}
