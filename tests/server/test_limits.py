"""Limits that protect a shared server: caps on num_ctx and num_predict, the request body's
size and requests a minute, each refusal naming the limit and its setting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from fixtures.server import RunningServer, running_server
from modelkit.server.limits import RateLimit
from modelkit.store import Store


@pytest.fixture
def limited(tiny_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    env = {
        "MODELKIT_MAX_NUM_CTX": "512",
        "MODELKIT_MAX_NUM_PREDICT": "5",
        "MODELKIT_MAX_BODY_BYTES": "4096",
        "MODELKIT_MAX_REQUESTS_PER_MINUTE": "8",
        "MODELKIT_MAX_IMAGES": "1",
        "MODELKIT_MAX_IMAGE_BYTES": "30",
    }
    with running_server(tiny_store.root, tmp_path, env=env) as running:
        yield running


def test_limits_on_a_real_server(limited: RunningServer) -> None:
    client = ollama.Client(host=limited.url)
    with pytest.raises(ollama.ResponseError) as big_ctx:
        client.generate(model="tiny", prompt="hi", options={"num_ctx": 100000})
    assert big_ctx.value.status_code == 400
    assert "num_ctx 100000 is over this server's limit of 512 (MODELKIT_MAX_NUM_CTX)" in str(
        big_ctx.value
    )
    with pytest.raises(ollama.ResponseError, match="MODELKIT_MAX_NUM_PREDICT"):
        client.generate(model="tiny", prompt="hi", options={"num_predict": 50})
    # unlimited asks get the cap (the tiny model's own PARAMETER num_predict is 16)
    answer = client.generate(model="tiny", prompt="hi", options={"num_predict": -1})
    assert answer.eval_count == 5 and answer.done_reason == "length"

    two = {"model": "tiny", "prompt": "hi", "images": ["aGk=", "aGk="]}
    r = httpx.post(f"{limited.url}/api/generate", json=two)
    assert r.status_code == 400 and "(MODELKIT_MAX_IMAGES)" in r.json()["error"]
    big = {"role": "user", "content": "hi", "images": ["QUJD" * 20]}
    r = httpx.post(f"{limited.url}/api/chat", json={"model": "tiny", "messages": [big]})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "an image of 60 bytes is over this server's limit of 30 (MODELKIT_MAX_IMAGE_BYTES)"
    )
    r = httpx.post(f"{limited.url}/api/generate", json={"model": "tiny", "prompt": "x" * 5000})
    assert r.status_code == 413
    assert r.json() == {
        "error": "request body too large: over 4096 bytes (MODELKIT_MAX_BODY_BYTES)"
    }
    # 6 requests so far (refused ones count); 2 more are allowed this minute, then 429
    codes = [httpx.get(f"{limited.url}/api/tags").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = httpx.get(f"{limited.url}/api/tags")
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
    assert "MODELKIT_MAX_REQUESTS_PER_MINUTE" in r.json()["error"]
    assert httpx.get(f"{limited.url}/healthz").status_code == 200  # probes are not counted


def test_the_window_slides() -> None:
    now = [1000.0]
    passed: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        passed.append(1)

    limit = RateLimit(app, per_minute=2, clock=lambda: now[0])
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def call(key: str | None = None) -> None:
        scope = {"type": "http", "path": "/api/chat", "client": ("10.0.0.1", 1)}
        if key:
            scope["state"] = {"api_key": key}
        asyncio.run(limit(scope, None, send))

    call(), call(), call()
    assert len(passed) == 2 and sent[0]["status"] == 429
    assert dict(sent[0]["headers"])[b"retry-after"] == b"60"
    call("ops")  # another caller has a budget of its own
    assert len(passed) == 3
    now[0] += 60.5
    call()
    assert len(passed) == 4


def test_num_ctx_may_not_ask_for_more_kv_cache_than_the_machine_has(
    ollama_models: Path, tmp_path: Path
) -> None:
    """Without MODELKIT_MAX_NUM_CTX the cap is the model's trained context and the memory
    free for its KV cache: a model that claims a 4-billion-token context cannot be asked for
    a KV cache of hundreds of GB."""
    from fixtures.tiny_gguf import write_tiny_gguf
    from modelkit.build import BuildCache, execute_build, plan_build
    from modelkit.modelfile import parse
    from modelkit.names import ModelName
    from modelkit.runtime.service import memory_available

    gguf = tmp_path / "huge-context.gguf"
    write_tiny_gguf(gguf, context_length=4_000_000_000)
    store = Store(ollama_models)
    cache = BuildCache.for_store(store.root)
    modelfile = f"FROM {gguf}\nPARAMETER num_thread 1\nPARAMETER num_predict 2\n"
    execute_build(plan_build(parse(modelfile), store, cache), ModelName.parse("wide"), store, cache)
    available = memory_available()
    assert available is not None
    asked = 3_000_000_000  # × 256 bytes a cell (2 layers, 2 KV heads of 32) = 768 GB
    assert asked * 256 > available
    with running_server(store.root, tmp_path) as server:
        client = ollama.Client(host=server.url)
        with pytest.raises(ollama.ResponseError) as refused:
            client.generate(model="wide", prompt="hi", options={"num_ctx": asked})
        assert refused.value.status_code == 400
        assert "GiB of KV cache, more than the" in str(refused.value)
        assert "(MODELKIT_MAX_NUM_CTX)" in str(refused.value)
        answer = client.generate(model="wide", prompt="hi", options={"num_ctx": 256})
        assert answer.done
