"""The OpenAI-compatible /v1 API through the real server process, driven by the official
``openai`` client and plain httpx."""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from fixtures.server import RunningServer, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.server.routes_responses import ResponsesBody, native_messages, native_tools
from modelkit.store import Store

HI = [{"role": "user", "content": "hi"}]
# OpenAI requests cannot pass num_thread or num_ctx: keep the answers short instead.
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 1, "max_tokens": 8}


def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", timeout=60, max_retries=0)


def build(store: Store, name: str, modelfile: str) -> None:
    cache = BuildCache.for_store(store.root)
    execute_build(plan_build(parse(modelfile), store, cache), ModelName.parse(name), store, cache)


def sse_events(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of a server-sent event stream, ``[DONE]`` kept as a string."""
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    return [b[6:] if b == "data: [DONE]" else json.loads(b[6:]) for b in blocks]


def test_chat_completion_and_its_stream_agree(server: RunningServer) -> None:
    c = client(server)
    whole = c.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    assert whole.id.startswith("chatcmpl-") and whole.object == "chat.completion"
    assert whole.model == "tiny" and whole.system_fingerprint == "fp_ollama"
    assert whole.created > 0
    choice = whole.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.finish_reason == "length" and choice.message.content
    assert choice.message.tool_calls is None
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 8 and whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 8

    chunks = list(
        c.chat.completions.create(
            model="tiny",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    assert {ch.id for ch in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {ch.created for ch in chunks} == {chunks[0].created}
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *content, finish, tail = chunks
    assert "".join(ch.choices[0].delta.content or "" for ch in content) == choice.message.content
    assert all(ch.choices[0].finish_reason is None for ch in content)
    assert finish.choices[0].finish_reason == "length" and finish.usage is None
    assert tail.choices == [] and tail.usage == whole.usage


def test_chat_request_conversion(server: RunningServer) -> None:
    c = client(server)
    plain = c.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    parts = c.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        **GREEDY,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    # max_completion_tokens wins over max_tokens, like OpenAI's newer name for it
    shorter = c.chat.completions.create(
        model="tiny", messages=HI, temperature=0, seed=1, max_tokens=8, max_completion_tokens=3
    )
    assert shorter.usage is not None and shorter.usage.completion_tokens == 3
    # a longer history converts, and a stop string (as a plain string) cuts the answer
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        *HI,
    ]
    full = c.chat.completions.create(model="tiny", messages=history, **GREEDY)
    text = full.choices[0].message.content or ""
    assert len(text) > 2
    cut = c.chat.completions.create(
        model="tiny",
        messages=history,
        stop=text[1:3],
        **GREEDY,
    )
    assert cut.choices[0].finish_reason == "stop"
    assert text.startswith(cut.choices[0].message.content or "")
    assert text[1:3] not in (cut.choices[0].message.content or "")


def test_json_schema_response_format(server: RunningServer) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = client(server).chat.completions.create(
        model="tiny",
        messages=HI,
        temperature=0,
        seed=1,
        max_tokens=48,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    content = r.choices[0].message.content or ""
    if r.choices[0].finish_reason == "stop":  # the grammar closed the object in time
        assert isinstance(json.loads(content)["ok"], bool)
    else:
        assert content.lstrip().startswith("{")


def test_reasoning_is_exposed_under_both_names(server: RunningServer, tiny_store: Store) -> None:
    # The template ends inside <think>, so everything the model writes is thinking.
    build(
        tiny_store,
        "thinker",
        'FROM tiny\nTEMPLATE "{{ .Prompt }}<think>{{/* </think> */}}"\n',
    )
    body = {"model": "thinker", "messages": HI, **GREEDY}
    whole = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60).json()
    message = whole["choices"][0]["message"]
    assert message["reasoning"] and message["reasoning"] == message["reasoning_content"]
    assert message["content"] == ""
    streamed = httpx.post(
        server.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60
    )
    events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    assert "".join(d["reasoning"] for d in deltas) == message["reasoning"]
    assert all(d["reasoning_content"] == d["reasoning"] for d in deltas)
    assert events[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    off = httpx.post(
        server.url + "/v1/chat/completions", json={**body, "reasoning_effort": "none"}
    ).json()
    assert "reasoning" not in off["choices"][0]["message"]
    assert off["choices"][0]["message"]["content"]

    # The Responses API: a reasoning summary item, then an (empty) message, whole or streamed.
    c = client(server)
    args: dict[str, Any] = {"model": "thinker", "input": "hi", "max_output_tokens": 8}
    whole_response = c.responses.create(**args, temperature=0)
    assert [item.type for item in whole_response.output] == ["reasoning", "message"]
    summary = whole_response.output[0].summary  # type: ignore[union-attr]
    assert summary[0].text == message["reasoning"]
    events = list(c.responses.create(**args, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds.index("response.reasoning_summary_part.added") < kinds.index(
        "response.reasoning_summary_text.delta"
    )
    assert kinds.index("response.reasoning_summary_text.done") < kinds.index(
        "response.reasoning_summary_part.done"
    )
    final = events[-1].response  # type: ignore[union-attr]
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_completions(server: RunningServer) -> None:
    c = client(server)
    whole = c.completions.create(model="tiny", prompt="hello", **GREEDY)
    assert whole.id.startswith("cmpl-") and whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length" and whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens == 8
    chunks = list(
        c.completions.create(
            model="tiny",
            prompt="hello",
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    *texts, tail = chunks
    assert "".join(ch.choices[0].text for ch in texts) == whole.choices[0].text
    assert texts[-1].choices[0].finish_reason == "length"
    assert tail.choices == [] and tail.usage == whole.usage
    bad = httpx.post(
        server.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "stop": ["a", 1]}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "invalid type for 'stop' field: float64"


def test_models_list_and_retrieve(server: RunningServer) -> None:
    c = client(server)
    models = c.models.list().data
    assert [(m.id, m.object, m.owned_by) for m in models] == [("tiny:latest", "model", "library")]
    assert models[0].created > 0
    one = c.models.retrieve("tiny")
    assert (one.id, one.owned_by, one.created) == ("tiny", "library", models[0].created)
    with pytest.raises(openai.NotFoundError) as err:
        c.models.retrieve("missing")
    assert err.value.body == {
        "message": "model 'missing' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }


def test_embeddings_float_and_base64(server: RunningServer) -> None:
    c = client(server)
    floats = c.embeddings.create(model="tiny", input=["one", "two words"], encoding_format="float")
    assert floats.object == "list" and floats.model == "tiny"
    assert [d.index for d in floats.data] == [0, 1]
    for d in floats.data:
        assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-4)
    assert floats.usage.prompt_tokens > 0
    assert floats.usage.total_tokens == floats.usage.prompt_tokens
    # the client asks for base64 by default and decodes it itself
    decoded = c.embeddings.create(model="tiny", input="one")
    assert len(decoded.data) == 1
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5)
    raw = httpx.post(
        server.url + "/v1/embeddings",
        json={"model": "tiny", "input": "one", "encoding_format": "BASE64"},
        timeout=60,
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    vector = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert vector == pytest.approx(floats.data[0].embedding, rel=1e-5)
    for body, message in (
        ({"model": "tiny", "input": []}, "invalid input"),
        ({"model": "tiny", "input": "x", "encoding_format": "hex"}, "Invalid value for"),
    ):
        bad = httpx.post(server.url + "/v1/embeddings", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith(message)


def test_errors_have_openai_shape(server: RunningServer) -> None:
    c = client(server)
    with pytest.raises(openai.NotFoundError) as missing:
        c.chat.completions.create(model="missing", messages=HI)
    assert missing.value.status_code == 404
    assert missing.value.body == {
        "message": "model 'missing' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="missing", prompt="x")
    url = server.url + "/v1/chat/completions"
    cases: list[tuple[Any, str]] = [
        (b"{nope", "invalid JSON"),
        (b"", "missing request body"),
        ({"model": "tiny", "messages": []}, "[] is too short - 'messages'"),
        ({"model": "tiny", "messages": [{"role": "user"}]}, "invalid message content type: <nil>"),
        (
            {"model": "tiny", "messages": HI, "reasoning_effort": "loud"},
            'invalid reasoning value: "loud"',
        ),
        (
            {
                "model": "tiny",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ],
            },
            "image URLs are not currently supported",
        ),
        (
            {
                "model": "tiny",
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{"},
                            }
                        ],
                    }
                ],
            },
            "invalid tool call arguments",
        ),
    ]
    for body, message in cases:
        r = (
            httpx.post(url, content=body)
            if isinstance(body, bytes)
            else httpx.post(url, json=body, timeout=60)
        )
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"].startswith(message)
        assert error["param"] is None and error["code"] is None
    # the native API keeps its own error shape
    native = httpx.post(server.url + "/api/chat", json={"model": "missing", "messages": HI})
    assert native.json() == {"error": "model 'missing' not found"}


# ChatML with tools, as a Go template whose tool calls are bare JSON objects (so the tool-call
# tag is "{"): the 0.5B coder model follows this format, but not Qwen's <tool_call> tags.
QWEN_TOOLS_TEMPLATE = """{{- if or .System .Tools }}<|im_start|>system
{{ .System }}
{{- if .Tools }}

You may call functions to answer the user. Their signatures:
{{- range .Tools }}
{{ .Function }}
{{- end }}

To call a function, answer with only a JSON object:
{"name": <function-name>, "arguments": <args-json-object>}
{{- end }}<|im_end|>
{{ end }}
{{- range .Messages }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}{{ else }}
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}{{ end }}<|im_end|>
{{ else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- end }}<|im_start|>assistant
"""


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.slow
def test_qwen_calls_a_tool_through_the_openai_client(
    ollama_models: Path, qwen_gguf: Path, tmp_path: Path
) -> None:
    store = Store(ollama_models)
    build(
        store,
        "qwen",
        f'FROM {qwen_gguf}\nTEMPLATE """{QWEN_TOOLS_TEMPLATE}"""\n'
        "SYSTEM You are a helpful assistant.\n"
        "PARAMETER stop <|im_end|>\nPARAMETER num_ctx 4096\n",
    )
    with running_server(store.root, tmp_path) as server:
        c = client(server)
        question = [{"role": "user", "content": "What's the weather in Paris?"}]
        args: dict[str, Any] = {
            "model": "qwen",
            "messages": question,
            "tools": [WEATHER_TOOL],
            "temperature": 0,
            "max_tokens": 64,
        }
        whole = c.chat.completions.create(**args)
        choice = whole.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        calls = choice.message.tool_calls or []
        assert len(calls) == 1 and calls[0].type == "function" and calls[0].id
        assert calls[0].function.name == "get_weather"
        assert "Paris" in json.loads(calls[0].function.arguments)["city"]

        chunks = list(c.chat.completions.create(**args, stream=True))
        streamed = [
            call for ch in chunks if ch.choices for call in ch.choices[0].delta.tool_calls or []
        ]
        assert [s.function.name for s in streamed if s.function] == ["get_weather"]
        assert streamed[0].function is not None and streamed[0].function.arguments
        assert "Paris" in json.loads(streamed[0].function.arguments)["city"]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        # the call and its result go back as assistant and tool messages
        reply = c.chat.completions.create(
            model="qwen",
            messages=[
                *question,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": calls[0].id,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 24 degrees C"},
            ],
            tools=[WEATHER_TOOL],
            temperature=0,
            max_tokens=64,
        )
        assert reply.choices[0].finish_reason in ("stop", "tool_calls")

        # The Responses API: flat function tools, function_call items, and back again.
        flat_tool = {"type": "function", **WEATHER_TOOL["function"]}
        asked = c.responses.create(
            model="qwen",
            input="What's the weather in Paris?",
            tools=[flat_tool],  # type: ignore[list-item]
            temperature=0,
            max_output_tokens=64,
        )
        call_items = [item for item in asked.output if item.type == "function_call"]
        assert len(call_items) == 1 and asked.status == "completed"
        call = call_items[0]
        assert call.name == "get_weather" and call.call_id
        assert "Paris" in json.loads(call.arguments)["city"]
        streamed_events = list(
            c.responses.create(
                model="qwen",
                input="What's the weather in Paris?",
                tools=[flat_tool],  # type: ignore[list-item]
                temperature=0,
                max_output_tokens=64,
                stream=True,
            )
        )
        done_args = [
            e.arguments
            for e in streamed_events
            if e.type == "response.function_call_arguments.done"
        ]
        assert done_args == [call.arguments]
        answered = c.responses.create(
            model="qwen",
            input=[
                {"role": "user", "content": "What's the weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": "Sunny, 24 degrees C",
                },
            ],
            tools=[flat_tool],  # type: ignore[list-item]
            temperature=0,
            max_output_tokens=64,
        )
        # The tool result reached the model: it answers, or (a 0.5B model) calls again.
        kinds = {item.type for item in answered.output}
        assert answered.status == "completed"
        assert answered.output_text.strip() or kinds == {"function_call"}


def test_logprobs_in_chat_and_completions(server: RunningServer) -> None:
    c = client(server)
    chat = c.chat.completions.create(
        model="tiny", messages=HI, logprobs=True, top_logprobs=2, **GREEDY
    )
    choice = chat.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    content = choice.logprobs.content
    assert chat.usage is not None and len(content) == chat.usage.completion_tokens == 8
    assert "".join(t.token for t in content) == choice.message.content
    assert all(len(t.top_logprobs) == 2 and t.bytes is not None for t in content)
    assert all(t.top_logprobs[0].token == t.token for t in content)
    stream = c.chat.completions.create(
        model="tiny", messages=HI, logprobs=True, stream=True, **GREEDY
    )
    streamed = [
        t.token
        for chunk in stream
        for ch in chunk.choices
        if ch.logprobs is not None and ch.logprobs.content
        for t in ch.logprobs.content
    ]
    assert streamed == [t.token for t in content]
    plain = c.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    assert plain.choices[0].logprobs is None
    text = c.completions.create(model="tiny", prompt="hello", logprobs=2, **GREEDY)
    legacy = text.choices[0].logprobs
    assert legacy is not None and legacy.tokens is not None and legacy.top_logprobs is not None
    assert "".join(legacy.tokens) == text.choices[0].text
    assert legacy.text_offset == [
        sum(len(t) for t in legacy.tokens[:i]) for i in range(len(legacy.tokens))
    ]
    assert all(len(top) <= 2 for top in legacy.top_logprobs)


def test_responses_api_whole_and_streamed(server: RunningServer) -> None:
    c = client(server)
    args: dict[str, Any] = {
        "model": "tiny",
        "input": "hi",
        "instructions": "Be brief.",
        "max_output_tokens": 8,
        "temperature": 0,
    }
    whole = c.responses.create(**args)
    assert whole.object == "response" and whole.id.startswith("resp_")
    assert whole.status == "incomplete"  # 8 tokens, cut by max_output_tokens
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in whole.output] == ["message"]
    assert whole.output_text and whole.usage is not None
    assert whole.usage.output_tokens == 8 and whole.usage.input_tokens > 0
    assert whole.usage.total_tokens == whole.usage.input_tokens + 8

    events = list(c.responses.create(**args, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas == final.output_text == whole.output_text  # greedy: the same answer
    assert final.usage is not None and final.usage.output_tokens == 8


def test_responses_input_items_become_a_chat() -> None:
    body = ResponsesBody(
        model="m",
        instructions="sys",
        input=[
            {"role": "developer", "content": "be exact"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"type": "reasoning", "summary": []},
        ],
    )
    assert native_messages(body) == [
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "be exact"},
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "function": {"name": "f", "arguments": {"a": 1}}},
                {"id": "c2", "function": {"name": "g", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1", "tool_name": "f"},
    ]
    tools = native_tools([{"type": "function", "name": "f", "parameters": {"type": "object"}}])
    assert tools == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]


def test_responses_errors_are_openai_shaped(server: RunningServer) -> None:
    missing = httpx.post(server.url + "/v1/responses", json={"model": "tiny"}, timeout=30)
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "input is required"
    bad = httpx.post(
        server.url + "/v1/responses",
        json={"model": "tiny", "input": [{"type": "web_search_call"}]},
        timeout=30,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "invalid input item type: web_search_call"
    unknown = httpx.post(
        server.url + "/v1/responses", json={"model": "nope", "input": "hi"}, timeout=30
    )
    assert unknown.status_code == 404 and "not found" in unknown.json()["error"]["message"]
