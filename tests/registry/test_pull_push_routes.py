"""``POST /api/pull`` / ``POST /api/push`` through the real server process, with the official
``ollama`` client, and the compatibility check after a pull (an unknown GGUF architecture)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import numpy as np
import ollama
import pytest
from click.testing import CliRunner

from fixtures.registry import RunningRegistry
from fixtures.server import RunningServer, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.cli.main import cli
from modelkit.errors import RegistryError
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.registry import pull, push
from modelkit.registry.compat import check_gguf, check_pulled
from modelkit.store import Store


@pytest.fixture
def server_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "server-models")
    store.ensure_layout()
    return store


@pytest.fixture
def server(server_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(server_store.root, tmp_path) as running:
        yield running


def _publish(store: Store, registry: RunningRegistry, src: str, repo_tag: str) -> str:
    name = registry.name(repo_tag)
    store.copy(ModelName.parse(src), ModelName.parse(name))
    push(store, name)
    return name


def _post(server: RunningServer, path: str, body: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_pull_streams_progress_with_the_ollama_client(
    registry: RunningRegistry,
    source_store: Store,
    server_store: Store,
    server: RunningServer,
) -> None:
    name = _publish(source_store, registry, "tiny", "test/tiny:latest")
    client = ollama.Client(host=server.url)
    events = list(client.pull(name, insecure=True, stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    local = source_store.read_manifest(ModelName.parse(name))
    model_layer = local.manifest.layers[0]
    done = [e for e in events if e.digest == model_layer.digest]
    assert done and done[-1].total == model_layer.size == done[-1].completed
    assert done[-1].status == f"pulling {model_layer.digest[7:19]}"
    assert server_store.read_manifest(ModelName.parse(name)).raw == local.raw
    listed = [m.model for m in client.list().models]
    assert name in listed

    # Again, not streamed: blobs are cached, the answer is the final object.
    response = _post(server, "/api/pull", {"name": name, "stream": False})
    assert response.status_code == 200
    assert response.json() == {"status": "success"}


def test_push_streams_progress_and_lands_in_the_registry(
    registry: RunningRegistry,
    source_store: Store,
    server_store: Store,
    empty_store: Store,
    server: RunningServer,
) -> None:
    name = registry.name("team/pushed:v1")
    # Put a model into the server's store (the server reads the store from disk).
    _copy_model(source_store, server_store, "tiny", name)

    client = ollama.Client(host=server.url)
    events = list(client.push(name, insecure=True, stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    assert any(e.digest and e.total and e.completed == e.total for e in events)

    pulled = pull(empty_store, name)
    assert pulled.raw == server_store.read_manifest(ModelName.parse(name)).raw

    response = _post(server, "/api/push", {"model": name, "stream": False})
    assert response.status_code == 200 and response.json() == {"status": "success"}


def _copy_model(src: Store, dst: Store, name: str, new_name: str) -> None:
    stored = src.read_manifest(ModelName.parse(name))
    dst.ensure_layout()
    for digest in stored.manifest.referenced_digests():
        target = dst.blob_path(digest)
        if not target.exists():
            target.write_bytes(src.blob_path(digest).read_bytes())
    dst.write_manifest_bytes(ModelName.parse(new_name), stored.raw)


def test_request_errors(
    registry: RunningRegistry, server: RunningServer, server_store: Store
) -> None:
    for path in ("/api/pull", "/api/push"):
        response = _post(server, path, {"stream": False})
        assert response.status_code == 400
        assert response.json() == {"error": "model is required"}
        response = _post(server, path, {"model": "bad name!", "stream": False})
        assert response.status_code == 400 and "is invalid" in response.json()["error"]
        assert httpx.post(server.url + path, timeout=10).json() == {"error": "missing request body"}

    missing = registry.name("test/absent:latest")
    response = _post(server, "/api/push", {"model": missing})
    assert response.status_code == 404
    assert response.json() == {"error": f'model "{missing}" not found'}

    # Registry errors: non-streamed → an HTTP error; streamed → a final error line.
    response = _post(server, "/api/pull", {"model": missing, "stream": False})
    assert response.status_code == 500
    assert response.json()["error"].startswith("pull model manifest:")
    response = _post(server, "/api/pull", {"model": missing})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert set(lines[-1]) == {"error"} and "pull model manifest:" in lines[-1]["error"]
    with pytest.raises(ollama.ResponseError, match="pull model manifest"):
        list(ollama.Client(host=server.url).pull(missing, stream=True))
    assert server_store.list_models() == []


# -- compatibility check ---------------------------------------------------------------------


def _write_unknown_arch(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def odd_store(tmp_path: Path) -> Store:
    """A store holding ``odd:latest``, a GGUF of architecture "notanarch"."""
    path = _write_unknown_arch(tmp_path / "odd.gguf")
    store = Store(tmp_path / "odd-models")
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse(f"FROM {path}\n"), store, cache)
    execute_build(plan, ModelName.parse("odd"), store, cache)
    return store


def test_compat_check_accepts_a_known_arch_and_names_an_unknown_one(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    assert check_gguf(tiny_gguf) == "llama"
    odd = _write_unknown_arch(tmp_path / "odd.gguf")
    with pytest.raises(RegistryError, match='architecture "notanarch" is not supported') as err:
        check_gguf(odd, name="x/odd:latest")
    assert "hf.co/<user>/<repo>:<quant>" in str(err.value)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(RegistryError, match="not a usable GGUF"):
        check_gguf(bad)


def test_pull_of_unknown_arch_reports_it_and_keeps_the_model(
    registry: RunningRegistry,
    odd_store: Store,
    empty_store: Store,
    server_store: Store,
    server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(odd_store, registry, "odd", "test/odd:latest")

    # Library level: pull succeeds, the check names the architecture.
    stored = pull(empty_store, name)
    with pytest.raises(RegistryError, match="notanarch"):
        check_pulled(empty_store, stored)

    # /api/pull streamed: the last line is the error, not success; the model is kept.
    with pytest.raises(ollama.ResponseError, match="notanarch") as err:
        list(ollama.Client(host=server.url).pull(name, stream=True))
    assert "hf.co/" in str(err.value)
    assert server_store.read_manifest(ModelName.parse(name)).raw == stored.raw
    response = _post(server, "/api/pull", {"model": name, "stream": False})
    assert response.status_code == 500 and "notanarch" in response.json()["error"]

    # FROM that pulls it: a build error naming the architecture.
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {name}\n")
    fresh = Store(tmp_path / "fresh-models")
    monkeypatch.setenv("OLLAMA_MODELS", str(fresh.root))
    result = CliRunner().invoke(cli, ["build", "--quiet", "-f", str(modelfile), "-t", "mine"])
    assert result.exit_code != 0
    assert 'architecture "notanarch"' in result.output
    assert fresh.read_manifest(ModelName.parse(name)).raw == stored.raw  # kept
