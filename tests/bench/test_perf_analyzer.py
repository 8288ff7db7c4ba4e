"""Triton's perf_analyzer against a real `python -m service` (`python -m bench.perf_analyzer`).

The input files are checked against the service's own decoding; the smoke run installs the pinned
perf_analyzer into its venv (about 16 MB from PyPI, once), serves the shipped digits-jem with gRPC
on, and has perf_analyzer drive it over REST and gRPC with both inputs: every request it sends
must be answered 200, as the service's own counter says.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.models import digit_images
from bench.perf_analyzer import input_data as input_data_cli
from bench.perf_analyzer.__main__ import main
from bench.perf_analyzer.run import INPUTS, input_data, unresolved_libraries
from service.v2.tensors import bytes_elements
from training.data import load_digits_dataset


def test_input_files_carry_the_pixels_in_perf_analyzers_forms() -> None:
    images = digit_images(load_digits_dataset(seed=0), 3)
    uint8 = input_data(images, "pixels_uint8")["data"]
    assert [step["pixels_uint8"]["shape"] for step in uint8] == [[8, 8, 1]] * 3
    np.testing.assert_array_equal(
        np.array(uint8[1]["pixels_uint8"]["content"], dtype=np.uint8).reshape(8, 8), images[1]
    )
    files = input_data(images, "images")["data"]
    for step, pixels in zip(files, images, strict=True):
        # the raw BYTES tensor of one element: what the service splits, then one PNG file
        (png,) = bytes_elements("images", base64.b64decode(step["images"]["b64"]), 1)
        with Image.open(io.BytesIO(png)) as decoded:
            np.testing.assert_array_equal(np.asarray(decoded), pixels)
    with pytest.raises(ValueError, match="unknown input 'nope'"):
        input_data(images, "nope")


def test_input_data_cli_takes_your_files_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photo, quality=90)
    scan = tmp_path / "scan.png"
    Image.new("L", (8, 8), 255).save(scan)
    out = tmp_path / "data.json"
    assert input_data_cli.main([str(photo), str(scan), "--out", str(out)]) == 0
    steps = json.loads(out.read_text())["data"]
    sent = [bytes_elements("images", base64.b64decode(s["images"]["b64"]), 1)[0] for s in steps]
    assert sent == [photo.read_bytes(), scan.read_bytes()]  # not re-encoded
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    assert input_data_cli.main([str(notes), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"input_data: error: {notes}: not an image Pillow can read", err
    assert input_data_cli.main([str(tmp_path / "gone.png"), "--out", str(out)]) == 2
    assert "No such file" in capsys.readouterr().err


def test_a_library_the_binary_cannot_load_is_named() -> None:
    # ldd's lines for the wheel's binary on a machine without Debian's libb64-0d
    ldd = (
        "\tlinux-vdso.so.1 (0x00007ffd5a3f2000)\n"
        "\tlibb64.so.0d => not found\n"
        "\tlibcudart.so.12 => /venv/nvidia/cuda_runtime/lib/libcudart.so.12 (0x00007f1c)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1c2)\n"
    )
    assert unresolved_libraries(ldd) == ["libb64.so.0d"]
    assert unresolved_libraries(ldd.replace("not found", "/usr/lib/libb64.so.0d (0x1)")) == []


@pytest.mark.slow
@pytest.mark.integration
def test_perf_analyzer_drives_the_service_over_rest_and_grpc(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "perf_analyzer.json").read_text())
    assert results["environment"]["perf_analyzer"].startswith("Perf Analyzer Version 2.51.0")
    rows = results["measurements"]
    assert {(m["protocol"], m["input"], m["concurrency"]) for m in rows} == {
        (p, i, c) for p in ("http", "grpc") for i in INPUTS for c in (1, 4)
    }
    for m in rows:
        assert m["error"] == "", m
        assert m["throughput"] > 0, m
        assert 0 < m["latency_us"]["p50"] <= m["latency_us"]["p99"], m
        # perf_analyzer's windows of 40 requests, at least three of them, all answered 200
        assert set(m["requests"]) == {"200"}, m
        assert m["requests"]["200"] >= 120, m
    table = (tmp_path / "perf_analyzer.md").read_text()
    assert "| grpc | images | 4 |" in table
    # the binary by hand, with the environment it needs
    version = subprocess.run(
        [sys.executable, "-m", "bench.perf_analyzer.tool", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Perf Analyzer Version 2.51.0" in version.stdout + version.stderr, version
