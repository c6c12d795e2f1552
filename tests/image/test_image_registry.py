"""Images pushed to a real registry (Debian's docker-registry): blobs skipped when present,
runtime images read from the registry and their layers mounted, not moved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from imagetest_helpers import BuildFn, digest_of, make_base_layout, read_layout

from fixtures.registry import RunningRegistry
from modelkit.image import assemble, push, write
from modelkit.image.oci import OCI_INDEX
from modelkit.registry import RegistryClient
from modelkit.store import Store

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


class Recorder:
    """An httpx event hook keeping ``(method, url)`` of every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, httpx.URL]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.method, request.url))

    def client(self, registry: RunningRegistry) -> RegistryClient:
        return RegistryClient(registry.url, event_hooks={"request": [self]})

    def committed(self) -> list[str]:
        """Digests of the uploads committed (``PUT …?digest=``)."""
        return [
            str(url.params["digest"])
            for method, url in self.seen
            if method == "PUT" and "digest" in url.params
        ]

    def blob_gets(self) -> list[str]:
        return [url.path for method, url in self.seen if method == "GET" and "/blobs/" in url.path]


def _manifest(registry: RunningRegistry, repo: str, tag: str, accept: str = ACCEPT) -> bytes:
    r = httpx.get(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
    assert r.status_code == 200, r.text
    return r.content


def _push_layout(registry: RunningRegistry, layout: Path, repo: str, tag: str) -> str:
    """Copy a hand-made OCI layout to the registry, blob by blob (a runtime image to build on)."""
    index = json.loads((layout / "index.json").read_bytes())
    [entry] = index["manifests"]
    with RegistryClient(registry.url) as client:
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            digest = "sha256:" + blob.name
            if digest == entry["digest"]:
                continue
            location = client.start_upload(repo)
            assert location is not None
            fd = os.open(blob, os.O_RDONLY)
            try:
                location = client.upload_part(location, fd, 0, blob.stat().st_size)
            finally:
                os.close(fd)
            client.finish_upload(location, digest)
        raw = (layout / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
        client.put_manifest(repo, tag, raw, entry["mediaType"])
    return entry["digest"]


def test_second_push_does_not_upload_the_weights_again(
    registry: RunningRegistry, build_model: BuildFn
) -> None:
    cold = build_model("cold", temperature=0)
    warm = build_model("warm", temperature=0.7)
    target = registry.name("models/tiny")
    events: list[dict[str, object]] = []
    first_rec = Recorder()
    with assemble(cold, "tiny", model_only=True) as first:
        client = first_rec.client(registry)
        outcome = push(first, f"{target}:v1", client=client, progress=events.append)
        weights = first.model_layers[0].digest
        assert _manifest(registry, "models/tiny", "v1") == first.manifest_bytes
    assert set(outcome.values()) == {"uploaded"}
    assert weights in first_rec.committed()
    assert any(e.get("digest") == weights and e.get("completed") == e.get("total") for e in events)

    rec = Recorder()
    with assemble(warm, "tiny", model_only=True) as second:
        outcome = push(second, f"{target}:v2", client=rec.client(registry))
        assert second.model_layers[0].digest == weights
        assert _manifest(registry, "models/tiny", "v2") == second.manifest_bytes
    assert outcome[weights] == "exists"
    assert weights not in rec.committed()
    assert sorted(rec.committed()) == sorted(d for d, what in outcome.items() if what == "uploaded")
    assert len(rec.committed()) == 2  # the small layer and the config
    assert [m for m, _ in rec.seen].count("PATCH") == 2  # no byte of the weights moved


def test_runtime_image_from_the_registry_is_mounted_not_moved(
    registry: RunningRegistry, store: Store, tmp_path: Path
) -> None:
    base_layout = tmp_path / "base"
    make_base_layout(base_layout)
    manifest_digest = _push_layout(registry, base_layout, "base/runtime", "1")
    base_ref = registry.name("base/runtime:1")
    rec = Recorder()
    with assemble(store, "tiny", base=base_ref) as image:
        base_layer = image.layers[0].digest
        assert image.config["config"]["User"] == "65532:65532"
        assert "PATH=/usr/bin" in image.config["config"]["Env"]
        outcome = push(image, registry.name("apps/tiny:1"), client=rec.client(registry))
        assert _manifest(registry, "apps/tiny", "1") == image.manifest_bytes
        assert outcome[base_layer] == "mounted"
        assert not [p for p in rec.blob_gets() if base_layer in p]  # never downloaded
        # A layout output does need the base layer's bytes: streamed from the registry.
        out = tmp_path / "layout"
        write(image, f"oci:{out}", "example.com/apps/tiny:1")
    manifest, _ = read_layout(out, "1")
    assert manifest["layers"][0]["digest"] == base_layer

    # An index (manifest list) naming the runtime image is resolved to it.
    entry = {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": manifest_digest,
        "size": len(_manifest(registry, "base/runtime", manifest_digest, "*/*")),
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    with RegistryClient(registry.url) as client:
        client.put_manifest("base/runtime", "multi", index.encode(), OCI_INDEX)
    with assemble(store, "tiny", base=registry.name("base/runtime:multi")) as from_index:
        assert from_index.layers[0].digest == base_layer
        assert from_index.digest == digest_of(from_index.manifest_bytes)
