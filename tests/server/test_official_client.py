"""The real server process driven by the official ``ollama`` Python client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import ollama
import pytest

from fixtures.server import RunningServer


def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def test_list_show_copy_delete(server: RunningServer) -> None:
    c = client(server)
    models = c.list().models
    assert [m.model for m in models] == ["tiny:latest"]
    assert models[0].details is not None and models[0].details.family == "llama"
    shown = c.show("tiny")
    assert shown.modelfile is not None and "SYSTEM You are terse." in shown.modelfile
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.parameters is not None and "<|im_end|>" in shown.parameters
    c.copy("tiny", "tiny-copy")
    assert {m.model for m in c.list().models} == {"tiny:latest", "tiny-copy:latest"}
    c.delete("tiny-copy")
    with pytest.raises(ollama.ResponseError) as err:
        c.show("tiny-copy")
    assert err.value.status_code == 404
    assert "not found" in err.value.error


def test_create_from_uploaded_blob(server: RunningServer, tiny_gguf: Path) -> None:
    c = client(server)
    digest = c.create_blob(tiny_gguf)
    assert digest == "sha256:" + hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    progress = list(
        c.create(
            model="uploaded",
            files={"tiny.gguf": digest},
            system="from the API",
            parameters={"temperature": 0.3, "stop": ["<|im_end|>"]},
            stream=True,
        )
    )
    assert progress[-1].status == "success"
    assert any("using existing layer" in (p.status or "") for p in progress)
    shown = c.show("uploaded")
    assert shown.modelfile is not None and "SYSTEM from the API" in shown.modelfile
    assert shown.parameters is not None and "temperature" in shown.parameters

    derived = c.create(model="derived", from_="uploaded", system="derived system", stream=False)
    assert derived.status == "success"
    assert "SYSTEM derived system" in (c.show("derived").modelfile or "")
    assert c.show("derived").details.parent_model == "uploaded:latest"  # type: ignore[union-attr]


def test_create_errors(server: RunningServer) -> None:
    c = client(server)
    with pytest.raises(ollama.ResponseError) as err:
        c.create(model="x", from_="does-not-exist", stream=False)
    assert err.value.status_code == 400 and "not found" in err.value.error
    raw = httpx.post(server.url + "/api/create", json={"model": "x"})
    assert raw.status_code == 400
    assert raw.json() == {"error": "neither 'from' or 'files' was specified"}
    raw = httpx.post(
        server.url + "/api/create",
        json={"model": "x", "files": {"../a.gguf": "sha256:" + "a" * 64}},
    )
    assert raw.status_code == 400 and raw.json()["error"] == "file path must be relative"
    assert httpx.get(server.url + "/").text == "Ollama is running"
