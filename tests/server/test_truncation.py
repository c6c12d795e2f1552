"""Truncation reported: a prompt cut to fit num_ctx says so in X-Modelkit-Truncated-Tokens
(/api/generate, /api/chat, /v1), and ``"truncate": false`` makes it a 400 instead."""

from __future__ import annotations

import httpx
import openai
import pytest

from fixtures.server import RunningServer
from modelkit.runtime.prompting import fit_to_context

HEADER = "x-modelkit-truncated-tokens"
LONG = " ".join(f"word{i}" for i in range(400))  # far over the tiny model's num_ctx 256
OPTIONS = {"num_predict": 2}


def test_a_cut_prompt_says_so(server: RunningServer) -> None:
    raw = {"model": "tiny", "prompt": LONG, "raw": True, "options": OPTIONS}
    whole = httpx.post(f"{server.url}/api/generate", json={**raw, "stream": False}, timeout=60)
    assert whole.status_code == 200
    dropped = int(whole.headers[HEADER])
    assert dropped > 100 and whole.json()["prompt_eval_count"] == 256
    with httpx.stream("POST", f"{server.url}/api/generate", json=raw, timeout=60) as streamed:
        assert int(streamed.headers[HEADER]) == dropped
        streamed.read()
    short = httpx.post(
        f"{server.url}/api/generate",
        json={"model": "tiny", "prompt": "hi", "options": OPTIONS, "stream": False},
    )
    assert HEADER not in short.headers  # nothing cut, nothing said


def test_chat_drops_older_messages_and_counts_them(server: RunningServer) -> None:
    messages = [
        {"role": "user", "content": LONG[:900]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "and now?"},
    ]
    body = {"model": "tiny", "messages": messages, "options": OPTIONS, "stream": False}
    r = httpx.post(f"{server.url}/api/chat", json=body, timeout=60)
    assert r.status_code == 200 and int(r.headers[HEADER]) > 100
    assert r.json()["prompt_eval_count"] < 256  # the old turn went, the last one stayed
    assert "older messages" in server.log_text()

    refused = httpx.post(f"{server.url}/api/chat", json={**body, "truncate": False}, timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"].endswith("tokens, over num_ctx 256")
    assert refused.json()["error"].startswith("prompt is ")


def test_generate_refuses_with_truncate_false(server: RunningServer) -> None:
    body = {"model": "tiny", "prompt": LONG, "raw": True, "truncate": False, "stream": False}
    r = httpx.post(f"{server.url}/api/generate", json=body, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"].startswith("prompt is ") and "over num_ctx 256" in r.json()["error"]


def test_openai_routes_carry_the_header(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": LONG}], max_tokens=2
    )
    assert int(raw.headers[HEADER]) > 100
    done = client.completions.with_raw_response.create(model="tiny", prompt=LONG, max_tokens=2)
    assert int(done.headers[HEADER]) > 100


@pytest.mark.parametrize("truncate", [True, False])
def test_fit_to_context_counts_what_it_drops(truncate: bool) -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a " * 50},
        {"role": "user", "content": "last"},
    ]

    def render(msgs: list[dict[str, str]]) -> str:
        return " ".join(m["content"] for m in msgs)

    def count(text: str) -> int:
        return len(text.split())

    text, dropped = fit_to_context(render, count, messages, 10, truncate=truncate)
    if truncate:
        assert text == "s last" and dropped == 50
    else:
        assert text == render(messages) and dropped == 0
