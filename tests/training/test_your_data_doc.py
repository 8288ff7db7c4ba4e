"""docs/your-data.md, run as written: every command of its ```bash blocks, in order, on a
folder of coloured shapes drawn here, from the image folder to predictions and OOD flags over
HTTP. Only the port changes (a free one for the doc's 8002), and the doc's shell loop that waits
for /readyz is this test's `wait_ready`."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from model_store import ModelStore
from tests.service_process import REPO, free_port, wait_ready
from tests.training._shapes import make_shapes_folder

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DOC = REPO / "docs" / "your-data.md"
DOC_PORT = 8002  # beside `make serve`'s 8000 and its gRPC example's 8001


def doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = [ln.strip() for block in blocks for ln in block.replace("\\\n", " ").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_the_walkthrough_has_every_step() -> None:
    tools = [" ".join(c.split()[:4]) for c in doc_commands()]
    for step in (
        ".venv/bin/python -m training train",
        ".venv/bin/python -m training calibrate",
        ".venv/bin/python -m training evaluate",
        ".venv/bin/python -m service --store",
    ):
        assert any(t.startswith(step) for t in tools), step
    assert sum(c.startswith("curl") for c in doc_commands()) >= 2


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    make_shapes_folder(tmp_path / "myshapes", per_class=12, size=24)
    yellow = {"yellow": (230, 210, 40)}
    make_shapes_folder(tmp_path / "other", per_class=10, size=24, classes=yellow, seed=1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "JEM_TORCH_THREADS": "1"}
    env.pop("JEM_MODEL_STORE", None)
    port = free_port()
    outputs: dict[str, str] = {}
    server: subprocess.Popen[bytes] | None = None
    log = tmp_path / "service.log"
    try:
        for command in doc_commands():
            command = command.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{port}")
            command = command.replace(f"--port {DOC_PORT}", f"--port {port}")
            if command.startswith("until curl") and "/readyz" in command:
                assert server is not None, "the doc waits for a server it has not started"
                continue  # the shell loop wait_ready below already ran for the server
            argv = shlex.split(command.removesuffix("&"))
            if argv[0] == ".venv/bin/python":  # the checkout's venv: this interpreter
                argv[0] = sys.executable
            if command.endswith("&"):
                with log.open("wb") as out:
                    server = subprocess.Popen(
                        argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                wait_ready(f"http://127.0.0.1:{port}", server, log.read_text)
                continue
            outputs[command] = _run(argv, tmp_path, env)
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    by_tool = {" ".join(c.split()[:4]): out for c, out in outputs.items()}

    # the conversion was said out loud, the estimate printed, and both stored in the manifest
    train_out = next(out for c, out in outputs.items() if "iterations=30" in c)
    assert "36 images in 3 classes; sizes 24x24 (36); modes RGBA (36)" in train_out
    assert "16x16 (HxW) RGB, bilinear resampling, transparent pixels -> white" in train_out
    assert re.search(r"estimate: [0-9.e+-]+ s/iteration", train_out)
    estimate_out = next(out for c, out in outputs.items() if c.endswith("--estimate"))
    assert re.search(r"x 2000 iterations = about", estimate_out)
    store = ModelStore(tmp_path / "store")
    manifest = store.manifest("shapes:1")
    spec = manifest.input_spec.model_dump()
    assert (spec["height"], spec["width"], spec["color_mode"]) == (16, 16, "RGB")
    assert spec["background"] == "white"
    assert manifest.class_names == ["circle", "square", "triangle"]
    assert manifest.sampling is not None
    assert manifest.sampling.init == "gaussian"

    # calibrate published shapes:2 sharing (not copying) the buffer with shapes:1
    buffer = "buffer.safetensors"
    one, two = (store.path(f"shapes:{v}") / buffer for v in (1, 2))
    assert os.path.samefile(one, two)
    store.verify("shapes:2")

    # the user's OOD folder is in the report, in the data set's words
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "`yellow-shapes` is the 10 images of `other`" in report
    assert "| energy | yellow-shapes |" in report
    assert "test images flagged" in report
    assert "test digits" not in report

    # predictions and OOD flags over HTTP
    predict = json.loads(next(out for c, out in outputs.items() if c.endswith("/predict")))
    assert (predict["model"], predict["version"]) == ("shapes", 2)
    assert predict["predictions"][0]["class_name"] in manifest.class_names
    assert isinstance(predict["predictions"][0]["ood"]["energy"]["flagged"], bool)
    ood = json.loads(next(out for c, out in outputs.items() if c.endswith("/ood")))
    assert set(ood["results"][0]["scores"]) == {"energy", "grad_norm", "max_softmax"}
    assert isinstance(ood["results"][0]["flagged"], bool)
    with Image.open(tmp_path / "circles.png") as grid:
        assert grid.format == "PNG"
        assert grid.height < grid.width / 2  # one labelled row of four: one class
    assert by_tool  # every command ran
