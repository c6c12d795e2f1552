"""Deterministic layer tars: same inputs, same bytes and digests; the layer cache."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from imagetest_helpers import BuildFn

import modelkit.image.layers as layers_mod
from modelkit.errors import ImageError
from modelkit.image import LayerCache, LayerFile, LayerSpec, assemble, compute_layer
from modelkit.names import ModelName
from modelkit.store import Store, view_model


def _bytes(spec: LayerSpec) -> bytes:
    return b"".join(spec.stream())


def _weights_and_metadata(store: Store) -> tuple[LayerSpec, LayerSpec, str, str]:
    with assemble(store, "tiny", model_only=True) as image:
        weights, metadata = image.model_layers
        return weights.spec, metadata.spec, weights.digest, metadata.digest


def test_same_gguf_same_weights_layer_in_two_stores(build_model: BuildFn) -> None:
    a = build_model("store-a")
    b = build_model("store-b")
    spec_a, meta_a, digest_a, meta_digest_a = _weights_and_metadata(a)
    spec_b, meta_b, digest_b, meta_digest_b = _weights_and_metadata(b)
    assert digest_a == digest_b
    assert meta_digest_a == meta_digest_b  # same Modelfile: the small layer too
    raw_a, raw_b = _bytes(spec_a), _bytes(spec_b)
    assert raw_a == raw_b
    assert "sha256:" + hashlib.sha256(raw_a).hexdigest() == digest_a
    assert len(raw_a) == spec_a.size
    assert _bytes(meta_a) == _bytes(meta_b)


def test_tar_entries_are_normalized_and_sorted(store: Store) -> None:
    weights, metadata, _, _ = _weights_and_metadata(store)
    view = view_model(store, ModelName.parse("tiny"))
    assert view.model is not None
    for spec in (weights, metadata):
        with tarfile.open(fileobj=io.BytesIO(_bytes(spec))) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/"))
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
            assert m.mode == (0o555 if m.isdir() else 0o444), m.name
        dirs = {m.name for m in members if m.isdir()}
        for m in members:  # every parent directory has its own entry, before its children
            parent = m.name.rpartition("/")[0]
            while parent:
                assert parent in dirs
                assert names.index(parent) < names.index(m.name)
                parent = parent.rpartition("/")[0]
    with tarfile.open(fileobj=io.BytesIO(_bytes(weights))) as tar:
        files = [m.name for m in tar.getmembers() if m.isfile()]
    assert files == [f"models/blobs/sha256-{view.model.digest[7:]}"]


def test_parameter_change_changes_only_the_small_layer(build_model: BuildFn) -> None:
    cold = build_model("cold", temperature=0)
    warm = build_model("warm", temperature=0.7)
    _, _, dw1, dm1 = _weights_and_metadata(cold)
    _, m2, dw2, dm2 = _weights_and_metadata(warm)
    assert dw1 == dw2
    assert dm1 != dm2
    assert m2.size < 64 * 1024  # a few KB of config, params and manifest


def test_second_assembly_uses_the_layer_cache(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = layers_mod.hash_layer

    def counting(spec: LayerSpec, on_bytes: layers_mod.BytesFn | None = None) -> tuple[str, int]:
        calls.append(spec.content_size)
        return real(spec, on_bytes)

    monkeypatch.setattr(layers_mod, "hash_layer", counting)
    with assemble(store, "tiny", model_only=True) as first:
        pass
    assert len(calls) == 2  # weights and metadata, hashed once each
    assert (store.root / ".modelkit" / "image-layers.json").is_file()
    with assemble(store, "tiny", model_only=True) as second:
        pass
    assert len(calls) == 2, "the second assembly re-hashed a layer"
    assert second.digest == first.digest
    with assemble(store, "tiny", model_only=True, use_cache=False) as third:
        pass
    assert len(calls) == 4
    assert third.digest == first.digest


def test_cache_entry_with_wrong_size_is_ignored(tmp_path: Path) -> None:
    spec = LayerSpec((LayerFile.from_bytes("/x/y", b"data"),))
    cache = LayerCache(tmp_path / "cache.json")
    key = spec.cache_key()
    assert key is not None
    cache.put(key, "sha256:" + "0" * 64, 1)
    layer = compute_layer(spec, LayerCache(tmp_path / "cache.json"))
    assert layer.digest == "sha256:" + hashlib.sha256(_bytes(spec)).hexdigest()
    assert LayerCache(tmp_path / "cache.json").get(key) == (layer.digest, layer.size)


GOLDEN_SPEC = LayerSpec(
    (
        LayerFile.from_bytes("/models/blobs/sha256-" + "ab" * 32, b"weights\n"),
        LayerFile.from_bytes("/models/manifests/" + "n" * 120 + "/latest", b"{}\n"),
    )
)
GOLDEN_DIGEST = "sha256:84bbcec5e483021eda3dcdf56cf3839708feb218624c487f1a8b86893b67b658"


def test_layer_bytes_are_pinned() -> None:
    """The exact bytes of a layer never drift (Python version, machine, day): a change here
    changes every image's digest, and needs layers.FORMAT_VERSION bumped."""
    raw = _bytes(GOLDEN_SPEC)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == GOLDEN_DIGEST
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:  # names over 100 bytes survive
        assert any(m.name.endswith("n" * 120 + "/latest") for m in tar.getmembers())


def test_source_that_changed_size_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "blob"
    src.write_bytes(b"x" * 1000)
    spec = LayerSpec((LayerFile.from_file("/models/blob", src),))
    src.write_bytes(b"x" * 10)
    with pytest.raises(ImageError, match="expected 1000 bytes"):
        _bytes(spec)


def test_bad_paths_are_refused() -> None:
    with pytest.raises(ImageError):
        LayerSpec((LayerFile.from_bytes("/a/../etc/passwd", b""),)).members()
    with pytest.raises(ImageError, match="both a file and a directory"):
        LayerSpec((LayerFile.from_bytes("/a", b"1"), LayerFile.from_bytes("/a/b", b"2"))).members()
