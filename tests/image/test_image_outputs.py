"""Outputs of an assembled image: OCI layout, Docker archive; runtime images read from an OCI
layout or a Docker archive; config merging."""

from __future__ import annotations

import gzip
import importlib.util
import json
import tarfile
from pathlib import Path

import pytest
from imagetest_helpers import (
    digest_of,
    extract_layers,
    layout_blob,
    make_base_layout,
    read_layout,
    sha256_file,
)

from modelkit.errors import ImageError, ModelNotFoundError
from modelkit.image import assemble, load, write, write_oci_layout
from modelkit.image.oci import BlobDescriptor, Platform, select_platform
from modelkit.names import ModelName
from modelkit.store import Store, view_model

REF = "registry.example.com/models/tiny:v1"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


def test_oci_layout_is_valid_and_holds_a_usable_store(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with assemble(store, "tiny", model_only=True) as image:
        write(image, f"oci:{layout}", REF)
        digest = image.digest
    manifest, config = read_layout(layout, "v1")  # every blob re-hashed against its digest
    assert digest_of((layout_blob(layout, digest)).read_bytes()) == digest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [x["mediaType"] for x in manifest["layers"]] == [OCI_TAR, OCI_TAR]
    # Uncompressed layers: the diff_ids are the layer digests.
    assert config["rootfs"]["diff_ids"] == [x["digest"] for x in manifest["layers"]]
    assert len(config["history"]) == 2
    inner = config["config"]
    assert "OLLAMA_MODELS=/models" in inner["Env"]
    assert inner["ExposedPorts"] == {"11434/tcp": {}}
    original = store.read_manifest(ModelName.parse("tiny"))
    labels = inner["Labels"]
    assert labels["io.modelkit.model.digest"] == "sha256:" + original.digest
    assert labels["io.modelkit.model.name"] == "tiny:latest"
    assert json.loads(labels["io.modelkit.model.parameters"])["temperature"] == 0
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert config["created"] == "1970-01-01T00:00:00Z"

    root = extract_layers(layout, manifest, tmp_path / "rootfs")
    blobs = sorted((root / "models" / "blobs").iterdir())
    assert blobs
    for blob in blobs:  # each blob's content hashes to its name
        assert sha256_file(blob) == "sha256:" + blob.name.removeprefix("sha256-")
    inside = Store(root / "models")
    view = view_model(inside, ModelName.parse("tiny"))
    assert view.stored.digest == original.digest
    assert view.parameters["temperature"] == 0
    assert view.system == "You are terse."
    assert view.model is not None and inside.verify_blob(view.model.digest)


def test_rewriting_a_layout_keeps_blobs_and_other_tags(store: Store, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with assemble(store, "tiny", model_only=True) as image:
        first = write_oci_layout(image, layout, "v1")
        again = write_oci_layout(image, layout, "v2")
        replaced = write_oci_layout(image, layout, "v1")
    assert set(first.values()) == {"written"}
    assert set(again.values()) == {"exists"}
    assert set(replaced.values()) == {"exists"}
    index = json.loads((layout / "index.json").read_bytes())
    tags = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert sorted(tags) == ["v1", "v2"]
    read_layout(layout, "v2")
    assert not [p for p in (layout / "blobs" / "sha256").iterdir() if p.name.startswith(".")]


def test_runtime_image_from_an_oci_layout(store: Store, tmp_path: Path) -> None:
    base = make_base_layout(tmp_path / "base")
    out = tmp_path / "out"
    with assemble(
        store,
        "tiny",
        base=base,
        env={"FOO": "bar", "OLLAMA_HOST": "0.0.0.0:8080"},
        labels={"org.opencontainers.image.source": "https://example.com/tiny"},
        platform=Platform("linux", "amd64"),
    ) as image:
        write(image, f"oci:{out}:stable", REF)
    manifest, config = read_layout(out, "stable")
    base_layer = manifest["layers"][0]
    assert base_layer["mediaType"] == OCI_GZIP  # the Docker type, in OCI's words
    assert [x["mediaType"] for x in manifest["layers"][1:]] == [OCI_TAR, OCI_TAR]
    inner = config["config"]
    assert inner["Env"] == [
        "PATH=/usr/bin",
        "OLLAMA_HOST=0.0.0.0:8080",
        "OLLAMA_MODELS=/models",
        "OLLAMA_NOPRUNE=1",
        "FOO=bar",
    ]
    assert inner["Entrypoint"] == ["/usr/bin/ollama"]
    assert inner["Cmd"] == ["serve"]
    assert inner["User"] == "65532:65532"
    assert inner["Labels"]["base.label"] == "kept"
    assert inner["Labels"]["org.opencontainers.image.source"] == "https://example.com/tiny"
    assert inner["ExposedPorts"] == {"11434/tcp": {}}
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == 3
    assert diff_ids[1:] == [x["digest"] for x in manifest["layers"][1:]]
    with gzip.open(layout_blob(out, base_layer["digest"])) as f:
        assert digest_of(f.read()) == diff_ids[0]
    assert config["history"][0]["created_by"] == "base layer"
    root = extract_layers(out, manifest, tmp_path / "rootfs")
    assert (root / "etc" / "runtime.txt").read_text() == "runtime\n"
    assert view_model(Store(root / "models"), ModelName.parse("tiny")).parameters


def test_docker_archive_output_and_input(store: Store, tmp_path: Path) -> None:
    base = make_base_layout(tmp_path / "base")
    archive = tmp_path / "image.tar"
    with assemble(store, "tiny", base=base) as image:
        write(image, f"docker-archive:{archive}", REF)
        layer_digests = [b.digest for b in image.layers]
        config_digest = image.config_blob.digest
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for m in members.values():
            assert (m.mtime, m.uid, m.gid) == (0, 0, 0)

        def read(name: str) -> bytes:
            f = tar.extractfile(members[name])
            assert f is not None
            return f.read()

        entries = json.loads(read("manifest.json"))
        assert entries == [
            {
                "Config": f"{config_digest[7:]}.json",
                "RepoTags": [REF],
                "Layers": [f"{d[7:]}.tar" for d in layer_digests],
            }
        ]
        config_raw = read(entries[0]["Config"])
        assert digest_of(config_raw) == config_digest
        diff_ids = json.loads(config_raw)["rootfs"]["diff_ids"]
        layer_names = entries[0]["Layers"]
        for name, digest, diff_id in zip(layer_names, layer_digests, diff_ids, strict=True):
            data = read(name)
            assert digest_of(data) == digest
            # docker load checks each layer, decompressed, against the config's diff_ids.
            plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            assert digest_of(plain) == diff_id
        assert read(entries[0]["Layers"][0])[:2] == b"\x1f\x8b"  # the base layer kept as gzip

    # The archive as a runtime image for another assembly: same layers underneath.
    with assemble(store, "tiny", base=f"docker-archive:{archive}") as on_top:
        assert [b.digest for b in on_top.layers[:3]] == layer_digests
        assert on_top.config["rootfs"]["diff_ids"][:3] == diff_ids
        out = tmp_path / "layout"
        write(on_top, f"oci:{out}", REF)
    read_layout(out, "v1")


def test_source_date_epoch_sets_created(store: Store) -> None:
    with assemble(store, "tiny", model_only=True) as plain:
        pass
    with assemble(store, "tiny", model_only=True, source_date_epoch=1700000000) as dated:
        pass
    assert dated.config["created"] == "2023-11-14T22:13:20Z"
    assert dated.config["config"]["Labels"]["org.opencontainers.image.created"] == (
        "2023-11-14T22:13:20Z"
    )
    assert dated.digest != plain.digest
    assert [x.digest for x in dated.model_layers] == [x.digest for x in plain.model_layers]


def test_assembly_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="--model-only"):
        assemble(store, "tiny")
    with pytest.raises(ImageError, match="exclude"):
        assemble(store, "tiny", base="oci:x", model_only=True)
    with pytest.raises(ModelNotFoundError):
        assemble(store, "nope", model_only=True)
    with pytest.raises(ImageError, match="not an OCI image layout"):
        assemble(store, "tiny", base=f"oci:{tmp_path / 'missing'}")
    with pytest.raises(ImageError, match="no image tagged"):
        assemble(store, "tiny", base=make_base_layout(tmp_path / "base") + "x")
    with pytest.raises(ImageError, match="invalid image reference"):
        assemble(store, "tiny", base="Bad Ref!")
    with assemble(store, "tiny", model_only=True) as image, pytest.raises(ImageError):
        write(image, f"tar:{tmp_path}", REF)


@pytest.mark.skipif(
    importlib.util.find_spec("docker") is not None, reason="the docker package is installed"
)
def test_docker_daemon_needs_the_sdk(store: Store) -> None:
    with pytest.raises(ImageError, match="docker Python package"):
        assemble(store, "tiny", base="docker-daemon:ollama/ollama:latest")
    with assemble(store, "tiny", model_only=True) as image, pytest.raises(ImageError):
        load(image, "tiny:v1")


def test_platform_choice_in_an_index() -> None:
    def entry(arch: str, os: str = "linux") -> BlobDescriptor:
        return BlobDescriptor(
            "application/vnd.oci.image.manifest.v1+json",
            "sha256:" + (arch[0] * 64),
            1,
            platform=Platform(os, arch),
        )

    entries = [entry("unknown", "unknown"), entry("arm64"), entry("amd64")]
    assert select_platform(entries, Platform("linux", "arm64"), where="t") == entries[1]
    assert select_platform(entries, Platform("linux", "s390x"), where="t") == entries[2]
    # One usable entry is the answer whatever its platform (attestations never count) ...
    assert select_platform(entries[:2], Platform("linux", "s390x"), where="t") == entries[1]
    # ... two that both miss are an error naming what there is.
    with pytest.raises(ImageError, match="no image for linux/s390x"):
        select_platform([*entries[:2], entry("ppc64le")], Platform("linux", "s390x"), where="t")


def test_archive_tag_defaults_to_the_model_name(store: Store, tmp_path: Path) -> None:
    archive = tmp_path / "tiny.tar"
    with assemble(store, "tiny", model_only=True) as image:
        write(image, f"docker-archive:{archive}")
    with tarfile.open(archive) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        assert json.loads(f.read())[0]["RepoTags"] == ["tiny:latest"]
