"""The Store: layout, manifests, resolution, copy/delete/prune, locking and concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelkit.errors import ModelNotFoundError, StoreError
from modelkit.names import ModelName
from modelkit.store import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_SYSTEM,
    TEMP_PREFIX,
    Descriptor,
    Manifest,
    ModelConfig,
    Store,
    StoredManifest,
    read_gguf_info,
)

N = ModelName.parse


def build(store: Store, name: str, gguf: bytes, system: str | None = None) -> StoredManifest:
    """What a build does: blobs first (inside writing()), then the manifest."""
    with store.writing():
        model = store.write_bytes(gguf)
        config = store.write_bytes(ModelConfig(model_format="gguf").to_bytes())
        layers = [Descriptor(MEDIA_TYPE_MODEL, model.digest, model.size, from_="m.gguf")]
        if system is not None:
            ref = store.write_bytes(system.encode())
            layers.append(Descriptor(MEDIA_TYPE_SYSTEM, ref.digest, ref.size))
        manifest = Manifest(Descriptor(MEDIA_TYPE_CONFIG, config.digest, config.size), layers)
        return store.write_manifest(N(name), manifest)


def blob_files(store: Store) -> set[str]:
    return {p.name for p in store.blobs.directory.iterdir()}


def test_from_env(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert Store.from_env({"HOME": home}).root == Path(home) / ".ollama" / "models"
    assert Store.from_env({"HOME": home, "OLLAMA_MODELS": ""}).root == (
        Path(home) / ".ollama" / "models"
    )
    assert Store.from_env({"OLLAMA_MODELS": "/srv/models"}).root == Path("/srv/models")
    assert Store.from_env({"OLLAMA_MODELS": ' "/srv/models" '}).root == Path("/srv/models")
    assert Store.from_env({"HOME": home, "OLLAMA_MODELS": "~/m"}).root == Path(home) / "m"
    assert Store.from_env({"HOME": home, "OLLAMA_MODELS": "~"}).root == Path(home)
    assert Store.from_env({"OLLAMA_MODELS": "rel/dir"}).root == Path.cwd() / "rel" / "dir"


def test_write_and_read_manifest(store: Store) -> None:
    stored = build(store, "tiny", b"GGUF weights", system="Say hi!")
    path = store.root / "manifests/registry.ollama.ai/library/tiny/latest"
    assert stored.path == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    for d in (path.parent, store.root / "manifests", store.root / "blobs"):
        assert stat.S_IMODE(d.stat().st_mode) & 0o755 == 0o755
    raw = path.read_bytes()
    assert raw == stored.manifest.to_bytes() and raw.endswith(b"}\n")
    assert stored.digest == stored.manifest.digest()
    again = store.read_manifest(N("tiny"))
    assert again.raw == raw and again.digest == stored.digest and again.manifest == stored.manifest
    assert again.name == N("tiny")
    assert again.size == len(b"GGUF weights") + 7 + again.manifest.config.size
    assert again.short_digest == stored.digest[:12]
    assert isinstance(again.modified, datetime) and again.modified.tzinfo == UTC
    assert abs(again.modified.timestamp() - path.stat().st_mtime) < 1e-3
    assert store.read_config(again).model_format == "gguf"
    assert [n for n in os.listdir(path.parent) if n.startswith(TEMP_PREFIX)] == []
    with pytest.raises(ModelNotFoundError, match="model 'other:latest' not found"):
        store.read_manifest(N("other"))
    assert store.has_model(N("tiny")) and not store.has_model(N("other"))


def test_write_manifest_refuses_missing_or_wrong_blobs(store: Store) -> None:
    config = store.write_bytes(b"{}")
    model = store.write_bytes(b"weights")
    missing = "sha256:" + "0" * 64
    cfg = Descriptor(MEDIA_TYPE_CONFIG, config.digest, config.size)
    for manifest in (
        Manifest(cfg, [Descriptor(MEDIA_TYPE_MODEL, missing, 10)]),
        Manifest(Descriptor(MEDIA_TYPE_CONFIG, missing, 2), []),
        Manifest(cfg, [Descriptor(MEDIA_TYPE_MODEL, model.digest, model.size + 1)]),
    ):
        with pytest.raises(StoreError, match="cannot write manifest"):
            store.write_manifest(N("broken"), manifest)
    assert store.list_models() == []
    assert not (store.root / "manifests/registry.ollama.ai/library/broken").exists()


def test_pulled_manifest_bytes_kept_verbatim(store: Store) -> None:
    config = store.write_bytes(b"{}")
    model = store.write_bytes(b"weights")
    layer = {"size": model.size, "digest": model.digest, "mediaType": MEDIA_TYPE_MODEL}
    cfg = {"digest": config.digest, "size": config.size, "mediaType": MEDIA_TYPE_CONFIG}
    raw = json.dumps({"layers": [layer], "config": cfg, "schemaVersion": 2}, indent=2).encode()
    stored = store.write_manifest_bytes(N("registry.example.com/team/pulled:v1"), raw)
    again = store.read_manifest(N("registry.example.com/team/pulled:v1"))
    assert again.raw == raw and stored.raw == raw
    assert again.digest == hashlib.sha256(raw).hexdigest()
    with pytest.raises(StoreError):
        store.write_manifest_bytes(N("garbage"), b"not json")


def test_case_insensitive_resolution(store: Store) -> None:
    build(store, "Me/MixedCase:Tag1", b"w")
    assert store.resolve_name(N("me/mixedcase:tag1")) == N("Me/MixedCase:Tag1")
    assert store.resolve_name(N("ME/MIXEDCASE:TAG1")) == N("Me/MixedCase:Tag1")
    assert store.read_manifest(N("me/mixedcase:TAG1")).name == N("Me/MixedCase:Tag1")
    # Parts are canonicalised one by one against any existing manifest (Ollama's rule).
    assert store.resolve_name(N("me/mixedcase:new")) == N("Me/MixedCase:new")
    assert store.resolve_name(N("unrelated")) == N("unrelated")
    # Writing under another spelling updates the existing model instead of adding one.
    build(store, "ME/MIXEDCASE:TAG1", b"w2")
    assert [str(s.name) for s in store.list_models()] == ["registry.ollama.ai/Me/MixedCase:Tag1"]
    # An exact-case manifest wins when several spellings exist on disk.
    path = store.root / "manifests/registry.ollama.ai/me/mixedcase/tag1"
    path.parent.mkdir(parents=True)
    path.write_bytes(store.read_manifest(N("Me/MixedCase:Tag1")).raw)
    assert store.resolve_name(N("me/mixedcase:tag1")) == N("me/mixedcase:tag1")
    assert store.resolve_name(N("Me/MixedCase:Tag1")) == N("Me/MixedCase:Tag1")


def test_list_models_skips_junk(store: Store) -> None:
    build(store, "a", b"1")
    build(store, "me/b:v2", b"2")
    m = store.manifests_dir
    (m / "registry.ollama.ai/library/bad").mkdir(parents=True)
    (m / "registry.ollama.ai/library/bad/latest").write_bytes(b"{not json")
    (m / "registry.ollama.ai/library/-invalid").mkdir(parents=True)
    (m / "registry.ollama.ai/library/-invalid/latest").write_bytes(b"{}")
    (m / "too/shallow").mkdir(parents=True)
    (m / "too/shallow/file").write_bytes(b"{}")
    (m / "a/b/c/d").mkdir(parents=True)
    (m / "a/b/c/d/too-deep").write_bytes(b"{}")
    names = [s.name.display for s in store.list_models()]
    assert names == ["a:latest", "me/b:v2"]  # sorted by full name
    with pytest.raises(StoreError):
        store.read_manifest(N("bad"))


def test_copy(store: Store) -> None:
    src = build(store, "tiny:v1", b"weights", system="hi")
    copied = store.copy(N("TINY:V1"), N("other/tiny:copy"))
    assert copied.raw == src.raw and copied.digest == src.digest
    assert copied.name == N("other/tiny:copy")
    assert store.read_manifest(N("other/tiny:copy")).raw == src.raw
    with pytest.raises(ModelNotFoundError):
        store.copy(N("missing"), N("x"))
    assert store.copy(N("tiny:v1"), N("tiny:v1")).raw == src.raw


def test_delete_keeps_shared_blobs(store: Store) -> None:
    a = build(store, "a", b"shared weights", system="only in a")
    b = build(store, "me/b", b"shared weights", system="only in b")
    removed = store.delete(N("A"))
    only_a = {d.digest for d in a.manifest.layers} - b.manifest.referenced_digests()
    assert set(removed) == only_a and len(only_a) == 1
    assert not (store.manifests_dir / "registry.ollama.ai/library").exists()  # empty dirs pruned
    assert store.manifests_dir.is_dir()
    for digest in b.manifest.referenced_digests():
        assert store.has_blob(digest)
    with pytest.raises(ModelNotFoundError):
        store.delete(N("a"))
    store.delete(N("me/b"))
    assert blob_files(store) == set()
    assert list(store.manifests_dir.iterdir()) == []


def test_delete_during_a_build_leaves_blobs_to_prune(store: Store) -> None:
    a = build(store, "a", b"weights a")
    with store.writing():
        # A build in progress might be about to reference a's blobs: keep them.
        assert store.delete(N("a")) == []
    assert all(store.has_blob(d) for d in a.manifest.referenced_digests())
    assert set(store.prune()) == a.manifest.referenced_digests()


def test_delete_of_unparsable_manifest(store: Store) -> None:
    build(store, "good", b"w")
    path = store.manifests_dir / "registry.ollama.ai/library/bad/latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    assert store.delete(N("bad")) == []
    assert not path.exists()


def test_write_manifest_prune_replaced(store: Store) -> None:
    first = build(store, "m", b"v1", system="old system")
    build(store, "keep", b"v1")
    with store.writing():
        ref = store.write_bytes(b"new system")
    manifest = Manifest(
        first.manifest.config,
        [first.manifest.layers[0], Descriptor(MEDIA_TYPE_SYSTEM, ref.digest, ref.size)],
    )
    store.write_manifest(N("m"), manifest, prune_replaced=True)
    old_system = first.manifest.layers[1].digest
    assert not store.has_blob(old_system)
    assert store.has_blob(first.manifest.layers[0].digest)


def test_remove_unreferenced(store: Store) -> None:
    a = build(store, "a", b"weights", system="sys")
    orphan = store.write_bytes(b"orphan")
    used = a.manifest.layers[0].digest
    assert store.remove_unreferenced([used, orphan.digest.replace(":", "-")]) == [orphan.digest]
    assert store.has_blob(used) and not store.has_blob(orphan.digest)
    again = store.write_bytes(b"orphan")
    with store.writing():
        assert store.remove_unreferenced([again.digest]) == []  # a build may need it
    assert store.has_blob(again.digest)
    assert store.remove_unreferenced([]) == []


def test_prune(store: Store) -> None:
    kept = build(store, "kept", b"kept weights")
    garbage = store.write_bytes(b"orphan")
    fresh = store.write_bytes(b"fresh orphan")
    old = time.time() - 7200
    os.utime(store.blob_path(garbage.digest), (old, old))
    partial = store.blobs.directory / ("sha256-" + "a" * 64 + "-partial")
    partial.write_bytes(b"x")
    os.utime(partial, (old, old))
    dead_temp = store.blobs.directory / f"{TEMP_PREFIX}999999-deadbeef"
    dead_temp.write_bytes(b"half")
    os.utime(dead_temp, (old, old))
    empty = store.manifests_dir / "registry.ollama.ai/empty/dir"
    empty.mkdir(parents=True)

    assert store.prune(min_age_seconds=3600) == [garbage.digest]
    assert store.has_blob(fresh.digest)
    assert not partial.exists() and not dead_temp.exists()
    assert not (store.manifests_dir / "registry.ollama.ai/empty").exists()
    assert store.prune() == [fresh.digest]
    kept_files = {store.blob_path(d).name for d in kept.manifest.referenced_digests()}
    assert blob_files(store) == kept_files


def test_prune_refuses_when_a_manifest_is_unreadable(store: Store) -> None:
    build(store, "a", b"w")
    orphan = store.write_bytes(b"orphan")
    path = store.manifests_dir / "registry.ollama.ai/library/broken/latest"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{broken")
    with pytest.raises(StoreError):
        store.prune()
    assert store.has_blob(orphan.digest)
    with pytest.raises(StoreError):
        store.referenced_digests()


def test_prune_waits_for_writers(store: Store) -> None:
    entered = threading.Event()
    release = threading.Event()
    written: list[str] = []

    def writer() -> None:
        with store.writing():
            written.append(store.write_bytes(b"not yet referenced").digest)
            entered.set()
            release.wait(10)
            build(store, "late", b"not yet referenced")

    t = threading.Thread(target=writer)
    t.start()
    entered.wait(10)
    with pytest.raises(StoreError, match="busy"):
        store.prune(timeout=0.2)
    release.set()
    assert store.prune(timeout=10) == []  # waited for the build, then nothing to remove
    t.join()
    assert store.has_blob(written[0])
    with store.writing(), pytest.raises(StoreError, match="inside"):
        store.prune()


def test_lock_is_reentrant_and_exclusive(store: Store, tmp_path: Path) -> None:
    with store.lock(), store.lock():
        other = Store(store.root)
        got: list[bool] = []

        def try_other() -> None:
            try:
                with other.lock(timeout=0.1):
                    got.append(True)
            except StoreError:
                got.append(False)

        t = threading.Thread(target=try_other)
        t.start()
        t.join()
        assert got == [False]
    assert (store.root / ".modelkit.lock").parent == store.root


# -- several processes at once ---------------------------------------------------------------


def _worker(root: str, worker: int, rounds: int) -> None:
    store = Store(root)
    shared = b"shared weights " * 10_000
    for i in range(rounds):
        own = f"weights of {worker}/{i}".encode() * 1000
        build(store, f"w{worker}/model:r{i}", shared if i % 2 else own, system=f"s{worker}-{i}")
        build(store, "contended:latest", own, system=f"from {worker}")
        if i % 3 == 2:
            store.delete(N(f"w{worker}/model:r{i - 1}"))


def _pruner(root: str, rounds: int) -> None:
    store = Store(root)
    for _ in range(rounds):
        store.prune()
        time.sleep(0.01)


def test_concurrent_processes(store: Store) -> None:
    ctx = multiprocessing.get_context("spawn")
    root = str(store.root)
    procs = [ctx.Process(target=_worker, args=(root, w, 6)) for w in range(4)]
    procs.append(ctx.Process(target=_pruner, args=(root, 20)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    models = store.list_models()
    names = {s.name.display for s in models}
    assert "contended:latest" in names
    assert len(names) == 1 + 4 * (6 - 2)
    for s in models:
        for d in s.manifest.descriptors:
            assert store.verify_blob(d.digest).size == d.size  # no dangling or partial blob
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []
    store.prune()
    assert {p.name for p in store.blobs.directory.iterdir()} == {
        store.blob_path(d).name for d in store.referenced_digests()
    }


def test_build_model_from_tiny_gguf(store: Store, tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    with store.writing():
        model = store.import_file(tiny_gguf)
        config = store.write_bytes(ModelConfig.from_gguf(info).to_bytes())
        stored = store.write_manifest(
            N("tiny"),
            Manifest(
                Descriptor(MEDIA_TYPE_CONFIG, config.digest, config.size),
                [Descriptor(MEDIA_TYPE_MODEL, model.digest, model.size, from_="tiny.gguf")],
            ),
        )
    assert store.read_config(stored).file_type == "Q4_K_M"
    assert read_gguf_info(store.blob_path(model.digest)).parameter_count == 40
