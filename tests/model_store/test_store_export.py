"""`python -m model_store export` (`model_store.export.export`): versions into another store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model_store import ModelStore, StoreError, VersionExists
from model_store.cli import main
from model_store.export import export


def _history(store: ModelStore, save: Any) -> None:
    save()  # digits:1
    save(stage="checkpoint")  # digits:2, not "latest" (not final)
    save(files={"samples.png": b"\x89PNG fake"})  # digits:3, the latest final
    save("fashion")
    store.set_alias("digits", "production", 1)
    store.set_alias("digits", "candidate", 3)


def test_copies_the_latest_final_version_byte_for_byte(
    tmp_path: Path, store: ModelStore, save: Any
) -> None:
    _history(store, save)
    dest = ModelStore(tmp_path / "deploy")
    done = export(store, dest, ["digits", "fashion"])
    assert [str(d.ref) for d in done] == ["digits:3", "fashion:1"]
    assert done[0].aliases == ("candidate",)
    assert dest.list_models() == ["digits", "fashion"]
    assert dest.list_versions("digits") == [3]  # numbers kept: digits:3 is one model everywhere
    assert dest.resolve("digits").version == 3  # and it is the latest there
    assert dest.aliases("digits") == {"candidate": 3}  # production pointed at a version not copied
    for name in ("manifest.json", "weights.safetensors", "samples.png"):
        assert (dest.path("digits:3") / name).read_bytes() == (
            store.path("digits:3") / name
        ).read_bytes()
    loaded, original = dest.load("digits"), store.load("digits:3")
    for key, tensor in original.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], tensor)
    # the same again: left as it is, verified; a new version later is published after it
    again = export(store, dest, ["digits:3"])
    assert again[0].already_there
    save()  # digits:4 in the source
    export(store, dest, ["digits"])
    assert dest.list_versions("digits") == [3, 4]


def test_refuses_corrupt_sources_conflicts_and_unknown_names_before_writing(
    tmp_path: Path, store: ModelStore, save: Any, make_draft: Any, model: Any
) -> None:
    _history(store, save)
    dest = ModelStore(tmp_path / "deploy")
    with pytest.raises(StoreError, match="no model named 'digts'"):
        export(store, dest, ["digits", "digts"])
    assert dest.list_models() == []  # every reference resolves before anything is written
    weights = store.path("digits:1") / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])
    with pytest.raises(StoreError, match=r"digits:1: weights\.safetensors does not match"):
        export(store, dest, ["digits:1"])
    assert dest.list_models() == []
    dest.save("fashion", model, make_draft(), version=1)  # another model under the same number
    with pytest.raises(VersionExists):
        export(store, dest, ["fashion:1"])
    with pytest.raises(StoreError, match="the source store itself"):
        export(store, ModelStore(store.root), ["fashion"])


def test_cli(capsys: Any, tmp_path: Path, store: ModelStore, save: Any) -> None:
    _history(store, save)
    dest = tmp_path / "deploy"
    code = main(["--store", str(store.root), "export", str(dest), "digits", "fashion:1"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("digits:3: 2 files, ")
    assert lines[0].endswith("exported, verified, aliases candidate")
    assert lines[1].startswith("fashion:1: 1 files, ")
    code = main(["--store", str(store.root), "export", str(dest), "mnist"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("error: no model named 'mnist'")
