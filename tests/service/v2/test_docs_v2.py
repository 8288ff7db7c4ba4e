"""docs/service.md's tritonclient examples run against the shipped model, as a user would."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

from tests.service_process import REPO, free_port, run_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOC = REPO / "docs" / "service.md"


def test_v2_examples_run(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## The Open Inference Protocol") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    grpc_port = free_port()
    with run_service(
        REPO / "model_store" / "models",
        tmp_path / "server.log",
        models="digits-jem",
        JEM_GRPC_PORT=str(grpc_port),
    ) as server:
        printed = io.StringIO()
        for block in blocks:
            code = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
            code = code.replace("127.0.0.1:8001", f"127.0.0.1:{grpc_port}")
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(DOC), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "[0 1 2 3]"  # what the first example says it prints
    assert lines[2] == "[False False False False]"
    assert lines[3].startswith("[b'0' b'1' b'2' b'3']")
    assert lines[-2] == "64 ['pixels', 'pixels_uint8', 'images']"
    top = lines[-1].strip("[]").split()
    assert len(top) == 2, lines[-1]
    assert top[0].endswith(":0:0'"), lines[-1]  # the first digit, a 0, ranked first


# import name -> the distribution that `pip install` names
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn"}


def test_v2_examples_say_what_to_install() -> None:
    """The install line before the examples names every package they import (a client outside
    this project's virtual environment has none of them)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## The Open Inference Protocol") :]
    section = section[: section.index("\n## ")]
    (install,) = re.findall(r"```bash\n(pip install [^\n#]*)", section)
    named = {re.sub(r"\[.*\]", "", word.strip("'\"")) for word in install.split()[2:]}
    imported = set()
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    needed = {DISTRIBUTIONS.get(m, m) for m in imported if m not in sys.stdlib_module_names}
    assert needed == named, (needed, named)
    assert "tritonclient[http,grpc]" in install  # both of its clients: the examples use both
