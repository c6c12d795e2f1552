"""Push to and pull from a real registry (Debian's docker-registry 2.8)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from fixtures.registry import RunningRegistry, blob_proxy
from modelkit.cli.main import cli
from modelkit.errors import ModelNotFoundError, RegistryError
from modelkit.names import ModelName
from modelkit.registry import RegistryClient, Retry, partial_path, pull, push
from modelkit.store import Store

FAST = Retry(attempts=6, delay=0.001)  # the real first pause is 1 s


def _publish(store: Store, registry: RunningRegistry, repo_tag: str = "test/tiny:latest") -> str:
    """Copy ``tiny:latest`` to the registry's name in ``store``; returns that name."""
    name = registry.name(repo_tag)
    store.copy(ModelName.parse("tiny"), ModelName.parse(name))
    return name


class Recorder:
    """An httpx event hook keeping ``(method, url)`` of every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, httpx.URL]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.seen.append((request.method, request.url))

    def client(self, name: str) -> RegistryClient:
        return RegistryClient.for_name(ModelName.parse(name), event_hooks={"request": [self]})

    def methods(self) -> list[str]:
        return [m for m, _ in self.seen]


def _store_files(store: Store) -> dict[str, bytes]:
    return {
        str(p.relative_to(store.root)): p.read_bytes()
        for p in sorted(store.root.rglob("*"))
        if p.is_file() and not p.name.startswith(".modelkit")
    }


def test_push_then_pull_is_identical(
    registry: RunningRegistry,
    source_store: Store,
    empty_store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(source_store, registry)
    events: list[dict[str, Any]] = []
    outcome = push(source_store, name, progress=events.append)
    local = source_store.read_manifest(ModelName.parse(name))
    assert set(outcome) == {d.digest for d in local.manifest.descriptors}
    assert set(outcome.values()) == {"uploaded"}
    statuses = [e["status"] for e in events]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    model_layer = local.manifest.layers[0]
    assert {
        "status": f"pushing {model_layer.digest[7:19]}",
        "digest": model_layer.digest,
        "total": model_layer.size,
        "completed": model_layer.size,
    } in events

    pulled_events: list[dict[str, Any]] = []
    pulled = pull(empty_store, name, progress=pulled_events.append)
    assert pulled.digest == local.digest
    assert pulled.raw == local.raw
    for d in local.manifest.descriptors:
        assert (
            empty_store.blob_path(d.digest).read_bytes()
            == source_store.blob_path(d.digest).read_bytes()
        )
    statuses = [e["status"] for e in pulled_events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert f"pulling {model_layer.digest[7:19]}" in statuses
    assert not list(empty_store.blobs.directory.glob("*-partial"))

    # A second pull finds every blob: one completed event each, no downloads.
    again: list[dict[str, Any]] = []
    rec = Recorder()
    pull(empty_store, name, progress=again.append, client=rec.client(name))
    assert [m for m, url in rec.seen if "/blobs/" in url.path] == []

    monkeypatch.setenv("OLLAMA_MODELS", str(empty_store.root))
    result = CliRunner().invoke(cli, ["show", name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "llama" in result.stdout and "You are terse." in result.stdout


def test_second_push_skips_and_other_repo_mounts(
    registry: RunningRegistry, source_store: Store
) -> None:
    name = _publish(source_store, registry)
    push(source_store, name)

    rec = Recorder()
    outcome = push(source_store, name, client=rec.client(name))
    assert set(outcome.values()) == {"exists"}
    assert "POST" not in rec.methods() and "PATCH" not in rec.methods()

    other = _publish(source_store, registry, "other/tiny:v2")
    rec = Recorder()
    events: list[dict[str, Any]] = []
    outcome = push(source_store, other, progress=events.append, client=rec.client(other))
    assert set(outcome.values()) == {"mounted"}
    mounts = [url for m, url in rec.seen if m == "POST"]
    assert mounts and all(u.params.get("from") == "test/tiny" for u in mounts)
    assert "PATCH" not in rec.methods()
    assert events[-1] == {"status": "success"}
    # The mounted repository serves the same model.
    with RegistryClient.for_name(ModelName.parse(other)) as client:
        raw, _ = client.get_manifest("other/tiny", "v2")
    assert raw == source_store.read_manifest(ModelName.parse(other)).raw


def test_chunked_upload(registry: RunningRegistry, source_store: Store, empty_store: Store) -> None:
    name = _publish(source_store, registry)
    rec = Recorder()
    push(source_store, name, chunk_size=64 * 1024, client=rec.client(name))
    model_size = source_store.read_manifest(ModelName.parse(name)).manifest.layers[0].size
    assert rec.methods().count("PATCH") >= model_size // (64 * 1024)
    assert (
        pull(empty_store, name).digest == source_store.read_manifest(ModelName.parse(name)).digest
    )


def test_interrupted_pull_resumes_with_range(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    push(source_store, _publish(source_store, registry))
    with blob_proxy(int(registry.host.rsplit(":", 1)[1]), mode="cut") as proxy:
        name = f"{proxy.host}/test/tiny:latest"
        with pytest.raises(RegistryError, match=r"pull again to resume.*gave up after 1 attempt"):
            pull(empty_store, name, retry=Retry(attempts=1))
        manifest = source_store.read_manifest(ModelName.parse(registry.name("test/tiny"))).manifest
        model = manifest.layers[0]
        partial = partial_path(empty_store, model.digest)
        assert partial.is_file() and 0 < partial.stat().st_size < model.size
        assert not empty_store.has_blob(model.digest)
        assert not empty_store.has_model(ModelName.parse(name))
        kept = partial.stat().st_size

        events: list[dict[str, Any]] = []
        pulled = pull(empty_store, name, progress=events.append)
        assert proxy.range_requests() == [f"bytes={kept}-"]
        first = next(e for e in events if e.get("digest") == model.digest)
        assert first["completed"] == kept  # progress starts where the partial file ends
    assert not partial.exists()
    assert (
        empty_store.blob_path(model.digest).read_bytes()
        == source_store.blob_path(model.digest).read_bytes()
    )
    assert pulled.raw == source_store.read_manifest(ModelName.parse(registry.name("test/tiny"))).raw


def test_interrupted_blob_is_retried_within_one_pull(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    push(source_store, _publish(source_store, registry))
    model = source_store.read_manifest(ModelName.parse(registry.name("test/tiny"))).manifest
    weights = model.layers[0]
    port = int(registry.host.rsplit(":", 1)[1])
    with blob_proxy(port, mode="cut", times=2) as proxy:
        events: list[dict[str, Any]] = []
        pull(empty_store, f"{proxy.host}/test/tiny:latest", progress=events.append, retry=FAST)
        resumed = proxy.range_requests()
    # Two cuts, two retries, each resuming where the file ended: no byte fetched twice.
    assert len(resumed) == 2
    starts = [int(r.removeprefix("bytes=").rstrip("-")) for r in resumed]
    assert 0 < starts[0] < starts[1] < weights.size
    assert (
        empty_store.blob_path(weights.digest).read_bytes()
        == source_store.blob_path(weights.digest).read_bytes()
    )
    assert not partial_path(empty_store, weights.digest).exists()


def test_unavailable_registry_is_retried_then_given_up(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    push(source_store, _publish(source_store, registry))
    port = int(registry.host.rsplit(":", 1)[1])
    with blob_proxy(port, mode="unavailable", times=2) as proxy:
        pulled = pull(empty_store, f"{proxy.host}/test/tiny:latest", retry=FAST, max_blobs=1)
    assert pulled.manifest.layers
    # A registry that stays unavailable: each blob is tried ``attempts`` times, then an error.
    fresh = Store(empty_store.root.parent / "fresh")
    with blob_proxy(port, mode="unavailable", times=1000) as proxy:
        with pytest.raises(RegistryError, match=r"answered 503.*gave up after 3 attempts"):
            pull(fresh, f"{proxy.host}/test/tiny:latest", retry=Retry(3, 0.001), max_blobs=1)
        blob_gets = [p for m, p, _ in proxy.requests if m == "GET" and "/blobs/" in p]
    assert len(blob_gets) % 3 == 0 and blob_gets
    assert not fresh.has_model(ModelName.parse(f"{proxy.host}/test/tiny:latest"))


def test_corrupt_blob_is_refused(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    push(source_store, _publish(source_store, registry))
    empty_store.ensure_layout()
    before = _store_files(empty_store)
    with blob_proxy(int(registry.host.rsplit(":", 1)[1]), mode="corrupt") as proxy:
        name = f"{proxy.host}/test/tiny:latest"
        with pytest.raises(RegistryError, match="digest mismatch"):
            pull(empty_store, name)
    assert _store_files(empty_store) == before
    assert not empty_store.has_model(ModelName.parse(name))


def test_errors_are_clear(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    with pytest.raises(RegistryError, match=r"test/missing:latest not found") as info:
        pull(empty_store, registry.name("test/missing"))
    assert info.value.status == 404
    with pytest.raises(ModelNotFoundError):
        push(source_store, registry.name("test/nothing"))
    # Uppercase repositories are invalid for the registry: its answer is passed on.
    name = _publish(source_store, registry, "Test/Tiny:latest")
    with pytest.raises(
        RegistryError, match=r"start upload: POST .* answered 404: 404 page not found"
    ) as info:
        push(source_store, name)
    assert registry.url in str(info.value)


def test_cli_push_pull(
    registry: RunningRegistry,
    source_store: Store,
    empty_store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(source_store, registry)
    runner = CliRunner()
    monkeypatch.setenv("OLLAMA_MODELS", str(source_store.root))
    result = runner.invoke(cli, ["push", name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "success" in result.stderr

    monkeypatch.setenv("OLLAMA_MODELS", str(empty_store.root))
    result = runner.invoke(cli, ["pull", name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "writing manifest" in result.stderr and "success" in result.stderr
    assert (
        empty_store.read_manifest(ModelName.parse(name)).raw
        == source_store.read_manifest(ModelName.parse(name)).raw
    )

    result = runner.invoke(cli, ["pull", registry.name("test/absent")], catch_exceptions=False)
    assert result.exit_code == 1
    assert "Error: pull model manifest:" in result.stderr and "not found" in result.stderr


def test_pull_replacing_prunes_old_blobs(
    registry: RunningRegistry, source_store: Store, empty_store: Store, tmp_path: Path
) -> None:
    name = _publish(source_store, registry)
    push(source_store, name)
    pull(empty_store, name)
    old = empty_store.read_manifest(ModelName.parse(name))
    # Re-point the tag at a model without the LICENSE layer; its blob must go.
    other = source_store.read_manifest(ModelName.parse(name))
    kept_layers = [x for x in other.manifest.layers if "license" not in x.media_type]
    from modelkit.store import Manifest

    slim = Manifest(config=other.manifest.config, layers=kept_layers)
    source_store.write_manifest(ModelName.parse(registry.name("test/tiny:latest")), slim)
    push(source_store, name)
    events: list[dict[str, Any]] = []
    pull(empty_store, name, progress=events.append)
    gone = old.manifest.referenced_digests() - slim.referenced_digests()
    assert gone and all(not empty_store.has_blob(d) for d in gone)
    assert {"status": "removing unused layers"} in events


def test_concurrent_pulls_share_blobs(
    registry: RunningRegistry, source_store: Store, empty_store: Store
) -> None:
    name = _publish(source_store, registry)
    push(source_store, name)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            pull(empty_store, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (
        empty_store.read_manifest(ModelName.parse(name)).raw
        == source_store.read_manifest(ModelName.parse(name)).raw
    )
    assert not list(empty_store.blobs.directory.glob("*-partial"))
    for d in empty_store.read_manifest(ModelName.parse(name)).manifest.descriptors:
        empty_store.blobs.verify_blob(d.digest)
