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


def test_logprobs_through_the_client(server: RunningServer) -> None:
    c = client(server)
    answer = c.generate(model="tiny", prompt="hello", logprobs=True, top_logprobs=3)
    assert answer.logprobs is not None and answer.eval_count is not None
    assert len(answer.logprobs) == answer.eval_count == 16  # num_predict 16, no stop
    assert "".join(x.token for x in answer.logprobs) == answer.response
    for x in answer.logprobs:
        assert x.top_logprobs is not None and len(x.top_logprobs) == 3
        assert x.top_logprobs[0].token == x.token  # temperature 0: the likeliest token
        assert [t.logprob for t in x.top_logprobs] == sorted(
            (t.logprob for t in x.top_logprobs), reverse=True
        )
    streamed = list(
        c.chat(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            logprobs=True,
        )
    )
    tokens = [x for part in streamed for x in (part.logprobs or [])]
    assert "".join(x.token for x in tokens) == "".join(p.message.content or "" for p in streamed)
    assert all(not x.top_logprobs for x in tokens)
    plain = c.generate(model="tiny", prompt="hello")
    assert plain.logprobs is None
    with pytest.raises(ollama.ResponseError) as err:
        c.generate(model="tiny", prompt="hello", logprobs=True, top_logprobs=21)
    assert err.value.status_code == 400
    assert err.value.error == "top_logprobs must be between 0 and 20"
