"""Atomic publishing: a writer killed mid-save leaves no visible version; writers never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from model_store import ModelRef, ModelStore, VersionExists, _fs

REPO = Path(__file__).resolve().parents[2]

# Saves version 2 of "digits", but stops forever at one point of the publish sequence
# (announcing it on stdout) so that the test can SIGKILL it there.
WRITER = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    import model_store._fs as fs
    import model_store.publish as publish_module
    from jem import JEM, create_backbone
    from model_store import ModelStore

    root, pause_at = sys.argv[1], sys.argv[2]

    def pause(where):
        print("paused", where, flush=True)
        time.sleep(60)

    real_write, real_fsync_dir = publish_module.write_durable, fs.fsync_dir

    def write_durable(path, data):
        if path.name == pause_at:
            pause(path.parent)
        real_write(path, data)

    def fsync_dir(path):
        real_fsync_dir(path)
        if pause_at == "rename" and path.parent.name == fs.STAGING_DIRNAME:
            pause(path)  # the manifest is written and synced: only the rename is left

    publish_module.write_durable, fs.fsync_dir = write_durable, fsync_dir
    draft = {
        "backbone": {"name": "digits_cnn", "kwargs": {"width": 8}},
        "input_spec": {"channels": 1, "height": 8, "width": 8, "color_mode": "L"},
        "class_names": [str(i) for i in range(10)],
    }
    model = JEM(create_backbone("digits_cnn", width=8))
    buffer = {"x": torch.zeros(4, 1, 8, 8)}
    ModelStore(root).save("digits", model, draft, buffer=buffer, files={"report.md": b"r"})
    print("finished", flush=True)
    """
)


def _run_writer_until_paused(root: Path, pause_at: str) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), pause_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the writer pauses or exits
        assert line.startswith("paused"), (line, proc.communicate(timeout=30))
        staging = Path(line.split(maxsplit=1)[1].strip())
        # The version is mid-publish now: readers in another process see nothing of it.
        assert ModelStore(root).list_versions("digits") == [1]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return staging


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("pause_at", ["buffer.safetensors", "manifest.json", "rename"])
def test_writer_killed_mid_save_leaves_no_visible_version(
    store: ModelStore, save: Any, pause_at: str
) -> None:
    save()
    staging = _run_writer_until_paused(store.root, pause_at)
    assert staging.parent == store.root / _fs.STAGING_DIRNAME
    assert staging.is_dir()  # the crashed writer's leftovers are there ...
    assert (staging / "weights.safetensors").exists()
    assert (staging / "manifest.json").exists() == (pause_at == "rename")
    assert store.list_models() == ["digits"]  # ... but invisible
    assert store.list_versions("digits") == [1]
    assert store.resolve("digits") == ModelRef("digits", 1)
    store.verify("digits")
    store.load("digits")
    # The killed writer's lock died with it: the next writer proceeds, and cleans up after it.
    eager = ModelStore(store.root, staging_max_age_s=0.0)
    assert eager.save("digits", store.load("digits:1").model, store.manifest("digits:1")) == (
        ModelRef("digits", 2)
    )
    assert not staging.exists()
    assert store.list_versions("digits") == [1, 2]


def test_staging_of_a_live_writer_is_kept_and_old_leftovers_removed(store: ModelStore) -> None:
    store.root.mkdir()
    with _fs.staging_dir(store.root, "live") as live:
        (live / "weights.safetensors").write_bytes(b"partial")
        dead = store.root / _fs.STAGING_DIRNAME / "dead-1-abc"
        dead.mkdir()
        (dead / "weights.safetensors").write_bytes(b"partial")
        recent = store.root / _fs.STAGING_DIRNAME / "recent-1-abc"
        recent.mkdir()
        old = time.time() - 7200
        for path in (live, dead):
            os.utime(path, (old, old))
        removed = _fs.clean_staging(store.root, max_age_s=3600)
        assert removed == [dead]
        assert live.exists()
        assert recent.exists()
    assert not live.exists()  # the context manager removes its directory if never renamed


def test_failed_save_leaves_no_staging(store: ModelStore, save: Any, monkeypatch: Any) -> None:
    save()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("model_store.publish.write_durable", fail)
    with pytest.raises(OSError, match="disk full"):
        save()
    assert os.listdir(store.root / _fs.STAGING_DIRNAME) == []
    assert store.list_versions("digits") == [1]


def test_concurrent_writers_get_distinct_versions(store: ModelStore, save: Any) -> None:
    results: list[ModelRef] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            results.append(save())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    for ref in results:
        store.verify(ref)
        assert store.manifest(ref).version == ref.version


def test_explicit_version_race_has_one_winner(store: ModelStore, save: Any) -> None:
    outcomes: list[object] = []

    def writer() -> None:
        try:
            outcomes.append(save(version=5))
        except VersionExists as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(isinstance(o, ModelRef) for o in outcomes) == 1
    assert sum(isinstance(o, VersionExists) for o in outcomes) == 2
    assert store.list_versions("digits") == [5]
    assert os.listdir(store.root / _fs.STAGING_DIRNAME) == []


def test_saving_does_not_change_the_model(store: ModelStore, model: Any, make_draft: Any) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    store.save("digits", model, make_draft())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
