"""`python -m model_store list|show|verify|alias|delete`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model_store import Manifest, ModelStore
from model_store.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], store: ModelStore, *argv: str) -> tuple[int, str, str]:
    code = main(["--store", str(store.root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_verify(capsys: Any, store: ModelStore, save: Any) -> None:
    save()
    save(stage="checkpoint")
    save("fashion")
    store.set_alias("digits", "production", 1)

    code, out, _ = run(capsys, store, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digits"
    assert "final" in lines[1]
    assert "[production]" in lines[1]
    assert "digits_cnn" in lines[1]
    assert "checkpoint" in lines[2]
    assert lines[3] == "fashion"

    code, out, _ = run(capsys, store, "show", "digits:production")
    assert code == 0
    shown = Manifest.model_validate_json(out)
    assert shown == store.manifest("digits:1")
    assert json.loads(out)["format_version"] == 1

    code, out, _ = run(capsys, store, "verify", "digits")
    assert (code, out) == (0, "ok: digits:1 (1 files match the manifest)\n")


def test_verify_fails_with_the_error_message(capsys: Any, store: ModelStore, save: Any) -> None:
    path = store.path(save()) / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-1])
    code, out, err = run(capsys, store, "verify", "digits:1")
    assert code == 1
    assert out == ""
    assert err.startswith("error: digits:1: weights.safetensors does not match")
    code, _, err = run(capsys, store, "verify", "mnist")
    assert code == 1
    assert "no model named 'mnist'" in err
    assert "models there: digits" in err


def test_alias_and_delete(capsys: Any, store: ModelStore, save: Any) -> None:
    save()
    save()
    assert run(capsys, store, "alias", "digits", "production", "2")[:2] == (
        0,
        "digits:production -> 2\n",
    )
    assert store.resolve("digits:production").version == 2
    assert run(capsys, store, "alias", "digits", "production")[:2] == (0, "2\n")
    code, _, err = run(capsys, store, "alias", "digits", "production", "7")
    assert code == 1
    assert "versions: 1, 2" in err
    code, _, err = run(capsys, store, "delete", "digits:2")
    assert code == 1
    assert "production" in err
    assert run(capsys, store, "delete", "digits:1")[:2] == (0, "deleted digits:1\n")
    assert run(capsys, store, "alias", "--delete", "digits", "production")[0] == 0
    assert run(capsys, store, "delete", "digits:2")[0] == 0
    assert run(capsys, store, "list")[1] == f"no models in {store.root}\n"


def test_usage_errors_exit_2(capsys: Any, store: ModelStore) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--root", str(store.root), "frobnicate"])
    assert info.value.code == 2
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.integration
def test_module_entry_point(store: ModelStore, save: Any) -> None:
    save()
    env = {**os.environ, "PYTHONPATH": str(REPO), "JEM_MODEL_STORE": str(store.root)}
    done = subprocess.run(
        [sys.executable, "-m", "model_store", "verify", "digits"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: digits:1")


def test_a_reader_that_stops_early_is_not_an_error_with_a_traceback() -> None:
    # `python -m model_store list | head -0` on the shipped store: the reader has gone before
    # the listing is written
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JEM_MODEL_STORE", None)
    listing = subprocess.Popen(
        [sys.executable, "-m", "model_store", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert listing.stdout is not None
    listing.stdout.close()
    _, err = listing.communicate(timeout=120)
    assert err == b""
