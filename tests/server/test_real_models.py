"""Behaviour on real small models through the real server and the official client:
Qwen2.5-Coder-0.5B-Instruct with no TEMPLATE (its GGUF's own chat template is used) and
Gemma 3 270M, a base model whose Modelfile supplies a Go TEMPLATE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from fixtures.server import RunningServer, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

pytestmark = pytest.mark.slow

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}


def build(store: Store, name: str, modelfile: str) -> None:
    cache = BuildCache.for_store(store.root)
    execute_build(plan_build(parse(modelfile), store, cache), ModelName.parse(name), store, cache)


@pytest.fixture(scope="module")
def real_server(
    tmp_path_factory: pytest.TempPathFactory, qwen_gguf: Path, gemma_gguf: Path
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("real-models")
    store = Store(root / "models")
    build(store, "qwen", f"FROM {qwen_gguf}\nPARAMETER temperature 0\n")  # no TEMPLATE
    build(
        store,
        "gemma",
        f"FROM {gemma_gguf}\nTEMPLATE {{{{ .Prompt }}}}\nPARAMETER temperature 0\n"
        "PARAMETER num_predict 12\n",
    )
    with running_server(store.root, root) as server:
        yield server


def chat(server: RunningServer, content: str, **kwargs: object) -> ollama.ChatResponse:
    client = ollama.Client(host=server.url, timeout=120)
    return client.chat(
        model="qwen",
        messages=[{"role": "user", "content": content}],
        options={"num_predict": 64},
        **kwargs,  # type: ignore[arg-type]
    )


def test_qwen_uses_its_gguf_chat_template(real_server: RunningServer) -> None:
    shown = ollama.Client(host=real_server.url).show("qwen")
    assert shown.template is not None and "im_start" in shown.template
    reply = chat(real_server, "What color is the sky on a clear day? Answer in one word.")
    assert "blue" in reply.message.content.lower()
    assert reply.done_reason == "stop"


def test_qwen_reply_validates_against_a_schema(real_server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
            "population_millions": {"type": "number"},
        },
        "required": ["city", "country", "population_millions"],
    }
    reply = chat(real_server, "Describe the capital of France.", format=schema)
    data = json.loads(reply.message.content)
    assert set(data) == {"city", "country", "population_millions"}
    assert isinstance(data["city"], str) and isinstance(data["country"], str)
    assert isinstance(data["population_millions"], int | float)


def test_qwen_tool_call_is_parsed(real_server: RunningServer) -> None:
    reply = chat(real_server, "What is the weather like in Paris right now?", tools=[WEATHER_TOOL])
    calls = reply.message.tool_calls or []
    assert calls, f"no tool call in {reply.message.content!r}"
    assert calls[0].function.name == "get_weather"
    assert "paris" in str(calls[0].function.arguments.get("city", "")).lower()


def test_gemma_base_model_completes_with_a_go_template(real_server: RunningServer) -> None:
    client = ollama.Client(host=real_server.url, timeout=120)
    out = client.generate(model="gemma", prompt="The capital of France is")
    assert out.response.strip()
    assert out.eval_count and out.eval_count <= 12
    shown = client.show("gemma")
    assert shown.template == "{{ .Prompt }}"
