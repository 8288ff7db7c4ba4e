"""Resolving references: latest final version, explicit numbers, aliases; names that are refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from model_store import (
    CorruptFile,
    InvalidModelName,
    ModelNotFound,
    ModelRef,
    ModelStore,
    VersionInUse,
    VersionNotFound,
)
from model_store.names import parse_ref


def test_latest_skips_checkpoints_and_numbers_reach_any_stage(store: ModelStore, save: Any) -> None:
    save(stage="final")
    save(stage="final")
    save(stage="checkpoint")
    assert store.resolve("digits") == ModelRef("digits", 2)
    assert store.resolve("digits:latest") == ModelRef("digits", 2)
    assert store.resolve("digits:3") == ModelRef("digits", 3)
    assert store.resolve(ModelRef("digits", 3)) == ModelRef("digits", 3)
    assert store.load("digits:3").manifest.stage == "checkpoint"
    save(stage="final")
    assert store.resolve("digits") == ModelRef("digits", 4)


def test_only_checkpoints_means_no_latest(store: ModelStore, save: Any) -> None:
    save(stage="checkpoint")
    with pytest.raises(VersionNotFound, match="no version with stage 'final'") as info:
        store.resolve("digits")
    assert "versions: 1" in str(info.value)


def test_aliases_resolve_and_move_atomically(store: ModelStore, save: Any) -> None:
    save()
    save()
    store.set_alias("digits", "production", 1)
    store.set_alias("digits", "staging", 2)
    assert store.aliases("digits") == {"production": 1, "staging": 2}
    assert store.resolve("digits:production") == ModelRef("digits", 1)
    store.set_alias("digits", "production", 2)
    assert store.resolve("digits:production") == ModelRef("digits", 2)
    assert (store.root / "digits" / "aliases" / "production").read_text() == "2\n"
    assert sorted(os.listdir(store.root / "digits" / "aliases")) == ["production", "staging"]
    store.delete_alias("digits", "staging")
    assert store.aliases("digits") == {"production": 2}
    with pytest.raises(VersionNotFound, match="no alias 'staging'"):
        store.resolve("digits:staging")


def test_alias_errors(store: ModelStore, save: Any) -> None:
    save()
    with pytest.raises(VersionNotFound, match="versions: 1"):
        store.set_alias("digits", "production", 5)
    for bad in ("latest", "3", "../x", "a/b", "", "Prod"):
        with pytest.raises(InvalidModelName):
            store.set_alias("digits", bad, 1)
    (store.root / "digits" / "aliases").mkdir()
    (store.root / "digits" / "aliases" / "broken").write_text("not a number")
    with pytest.raises(CorruptFile, match="aliases/broken"):
        store.resolve("digits:broken")


def test_writes_to_an_unknown_model_create_nothing(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound):
        store.set_alias("digits", "production", 1)
    with pytest.raises(ModelNotFound):
        store.delete_alias("digits", "production")
    with pytest.raises(ModelNotFound):
        store.delete("digits:1")
    assert not store.root.exists()


def test_alias_to_a_deleted_version(store: ModelStore, save: Any) -> None:
    save()
    save()
    store.set_alias("digits", "production", 1)
    (store.root / "digits" / "aliases" / "production").write_text("9\n")  # edited by hand
    with pytest.raises(VersionNotFound, match="points to version 9"):
        store.resolve("digits:production")


def test_not_found_messages_list_what_exists(store: ModelStore, save: Any) -> None:
    save("digits")
    save("fashion")
    store.set_alias("digits", "production", 1)
    with pytest.raises(ModelNotFound) as info:
        store.resolve("mnist")
    assert "digits, fashion" in str(info.value)
    assert info.value.known == ["digits", "fashion"]
    with pytest.raises(VersionNotFound) as v_info:
        store.resolve("digits:4")
    assert "versions: 1" in str(v_info.value)
    assert "production -> 1" in str(v_info.value)
    assert ModelStore(store.root / "empty").list_models() == []


@pytest.mark.parametrize(
    "ref",
    [
        "../x",
        "/abs",
        "a/b",
        "",
        ".",
        "..",
        "a..b",
        "Digits",
        "-x",
        "x" * 65,
        "a\x00b",
        "a b",
        "digits:../x",
        "digits:",
        "digits:a/b",
        "digits:0",
        "..:1",
    ],
)
def test_unsafe_references_are_refused(store: ModelStore, save: Any, ref: str) -> None:
    save()
    with pytest.raises(InvalidModelName):
        store.resolve(ref)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".", "..", "a..b", ".staging"])
def test_unsafe_names_are_refused_everywhere(store: ModelStore, save: Any, name: str) -> None:
    with pytest.raises(InvalidModelName):
        save(name)
    with pytest.raises(InvalidModelName):
        store.list_versions(name)
    with pytest.raises(InvalidModelName):
        store.set_alias(name, "production", 1)
    assert store.list_models() == []


def test_valid_references_parse() -> None:
    assert parse_ref("digits-jem") == ("digits-jem", "latest")
    assert parse_ref("digits_v1.2:12") == ("digits_v1.2", "12")
    assert parse_ref("a:production") == ("a", "production")
    assert parse_ref(ModelRef("a", 3)) == ("a", "3")


def test_links_leading_out_of_the_root_are_refused(
    store: ModelStore, save: Any, tmp_path: Path
) -> None:
    save()
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (store.root / "evil").symlink_to(outside)
    with pytest.raises(InvalidModelName, match="outside"):
        store.resolve("evil:1")
    assert store.list_models() == ["digits"]


def test_delete(store: ModelStore, save: Any) -> None:
    for _ in range(3):
        save()
    store.set_alias("digits", "production", 3)
    with pytest.raises(InvalidModelName, match="explicitly"):
        store.delete("digits")
    with pytest.raises(VersionInUse, match="production"):
        store.delete("digits:3")
    assert store.delete("digits:2") == ModelRef("digits", 2)
    assert store.list_versions("digits") == [1, 3]
    store.delete("digits:3", force=True)
    assert store.aliases("digits") == {}
    assert store.resolve("digits") == ModelRef("digits", 1)
    with pytest.raises(VersionNotFound):
        store.delete("digits:3")
    store.delete("digits:1")
    assert store.list_models() == []
    with pytest.raises(ModelNotFound):
        store.resolve("digits")
    # Numbers are never reused: digits:3 named one model, and keeps naming only that one.
    assert save().version == 4
    assert os.listdir(store.root / ".staging") == []
