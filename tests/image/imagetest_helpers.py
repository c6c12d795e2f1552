"""Helpers for the image tests: read an assembled image back (OCI layout blobs, layer tars)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelkit.store import Store

BuildFn = Callable[..., Store]
"""``build(store_dir, name="tiny", temperature=0) -> Store`` (the ``build_model`` fixture)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def layout_blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def read_layout(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest, config)`` of the image tagged ``tag``, every blob re-hashed on the way."""
    index = json.loads((layout / "index.json").read_bytes())
    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    ]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    manifest_path = layout_blob(layout, entry["digest"])
    assert sha256_file(manifest_path) == entry["digest"]
    assert manifest_path.stat().st_size == entry["size"]
    manifest = json.loads(manifest_path.read_bytes())
    for desc in [manifest["config"], *manifest["layers"]]:
        path = layout_blob(layout, desc["digest"])
        assert sha256_file(path) == desc["digest"], desc
        assert path.stat().st_size == desc["size"], desc
    config = json.loads(layout_blob(layout, manifest["config"]["digest"]).read_bytes())
    return manifest, config


def extract_layers(layout: Path, manifest: dict[str, Any], dest: Path) -> Path:
    """Unpack the manifest's layers in order into ``dest`` (a container's root file system)."""
    dest.mkdir(parents=True, exist_ok=True)
    for desc in manifest["layers"]:
        with tarfile.open(layout_blob(layout, desc["digest"])) as tar:
            tar.extractall(dest, filter="data")
        # The layers' directories are 0o555: open them up for the next layer and for cleanup
        # (a non-root test user could not write into them otherwise).
        for path in dest.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
    return dest


def make_base_layout(layout: Path, tag: str = "1.0", architecture: str = "amd64") -> str:
    """A tiny runtime image in an OCI layout, written by hand: one gzip layer
    (``etc/runtime.txt``), a Docker v2 manifest, a config with Env, Entrypoint, Cmd and User.
    Returns the ``oci:DIR:TAG`` reference."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        data = b"runtime\n"
        info = tarfile.TarInfo("etc/runtime.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer_gz = gzip.compress(layer_tar, mtime=0)
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin", "OLLAMA_HOST=0.0.0.0"],
            "Entrypoint": ["/usr/bin/ollama"],
            "Cmd": ["serve"],
            "User": "65532:65532",
            "Labels": {"base.label": "kept"},
        },
        "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_tar)]},
        "history": [{"created_by": "base layer"}],
    }
    config_raw = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": digest_of(config_raw),
            "size": len(config_raw),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": digest_of(layer_gz),
                "size": len(layer_gz),
            }
        ],
    }
    manifest_raw = json.dumps(manifest).encode()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer_gz, config_raw, manifest_raw):
        (blobs / digest_of(blob)[7:]).write_bytes(blob)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": digest_of(manifest_raw),
                "size": len(manifest_raw),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return f"oci:{layout}:{tag}"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
