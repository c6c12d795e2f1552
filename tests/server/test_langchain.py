"""LangChain's ChatOllama against the real server and the real Qwen2.5-Coder-0.5B model, as a
user would run it: plain invoke, stream, and ``bind_tools``.

Two models are served: ``qwen`` (the GGUF alone) writes its tool calls after
``<tool_call>``; ``qwen-coder`` (told to put code in fenced blocks, like
examples/Modelfile) answers ``bind_tools`` with a ```` ```json ```` fenced call, which must
come back as ``tool_calls`` too.  Both are greedy (temperature 0), so the answers are fixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.server import running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

pytestmark = pytest.mark.slow

pytest.importorskip(
    "langchain_ollama",
    reason="langchain-ollama is not installed (pip install langchain-ollama, "
    "or pip install -e '.[dev]')",
)

from langchain_core.messages import AIMessageChunk  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_ollama import ChatOllama  # noqa: E402

PARAMETERS = "PARAMETER temperature 0\nPARAMETER num_predict 128\n"
CODER_SYSTEM = (
    "SYSTEM You are Qwen, a concise coding assistant. "
    "Answer briefly and put code in fenced blocks.\n"
)
QUESTION = "What's the weather in Paris?"


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny in {city}."


@pytest.fixture(scope="module")
def qwen_server(tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path) -> Iterator[str]:
    """``modelkit serve`` on a free port with ``qwen`` and ``qwen-coder`` (both on the GGUF's
    own chat template); yields its URL."""
    root = tmp_path_factory.mktemp("langchain")
    store = Store(root / "models")
    cache = BuildCache.for_store(store.root)
    # Each fenced-call test has a model name (a runner, a prompt cache) of its own: a greedy
    # answer can flip on a cached prefix that an earlier request left, which differs from
    # a fresh evaluation in the last bits.
    coders = [(name, CODER_SYSTEM) for name in ("qwen-coder", "qwen-coder-stream", "qwen-coder-v1")]
    for name, extra in [("qwen", ""), *coders]:
        plan = plan_build(parse(f"FROM {qwen_gguf}\n{PARAMETERS}{extra}"), store, cache)
        execute_build(plan, ModelName.parse(name), store, cache)
    with running_server(store.root, root) as server:
        yield server.url


@pytest.mark.parametrize("model", ["qwen", "qwen-coder"])
def test_bind_tools_returns_the_tool_call(qwen_server: str, model: str) -> None:
    llm = ChatOllama(model=model, base_url=qwen_server)
    reply = llm.bind_tools([get_weather]).invoke(QUESTION)
    assert reply.tool_calls, f"no tool call in {reply.content!r}"
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather"
    assert "paris" in str(call["args"].get("city", "")).lower(), call
    assert "```" not in str(reply.content)  # the fenced call is not also shown as text


def test_bind_tools_stream_returns_the_fenced_call(qwen_server: str) -> None:
    llm = ChatOllama(model="qwen-coder-stream", base_url=qwen_server).bind_tools([get_weather])
    total, count = AIMessageChunk(content=""), 0
    for chunk in llm.stream(QUESTION):
        assert isinstance(chunk, AIMessageChunk)
        total, count = total + chunk, count + 1
    assert count > 1
    assert [call["name"] for call in total.tool_calls] == ["get_weather"], total
    assert "paris" in str(total.tool_calls[0]["args"].get("city", "")).lower()
    assert "```" not in str(total.content)


def test_plain_invoke(qwen_server: str) -> None:
    llm = ChatOllama(model="qwen", base_url=qwen_server)
    reply = llm.invoke("What color is the sky on a clear day? Answer in one word.")
    assert "blue" in str(reply.content).lower()
    assert not reply.tool_calls
    assert reply.response_metadata.get("done_reason") == "stop"


def test_stream(qwen_server: str) -> None:
    llm = ChatOllama(model="qwen", base_url=qwen_server)
    chunks = list(llm.stream("Count from 1 to 5, separated by commas."))
    assert len(chunks) > 1  # streamed, not one answer
    text = "".join(str(chunk.content) for chunk in chunks)
    assert all(digit in text for digit in "12345"), text


def test_fenced_call_through_openai_v1_stream(qwen_server: str) -> None:
    """The /v1 route reads the same fenced call (official openai client, streamed)."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=qwen_server + "/v1", api_key="unused", timeout=120)
    weather_tool: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    stream = client.chat.completions.create(
        model="qwen-coder-v1",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[weather_tool],
        stream=True,
        temperature=0,  # /v1 samples at 1.0 unless told (as Ollama): greedy, as the rest
    )
    names, arguments, content, finish = "", "", "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            names += (call.function and call.function.name) or ""
            arguments += (call.function and call.function.arguments) or ""
        finish = choice.finish_reason or finish
    assert names == "get_weather", f"no tool call in {content!r}"
    assert "paris" in str(json.loads(arguments).get("city", "")).lower()
    assert "```" not in content
    assert finish == "tool_calls"
