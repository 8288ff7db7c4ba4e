"""docs/service.md's tritonclient examples run against the shipped model, as a user would."""

from __future__ import annotations

import contextlib
import io
import re
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
