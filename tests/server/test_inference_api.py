"""Generation, chat, embeddings and /api/ps through the real server process, driven by the
official ``ollama`` client and plain httpx."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import httpx
import ollama
import pytest

from fixtures.server import RunningServer, running_server
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

TINY_OPTIONS = {"num_thread": 1, "num_ctx": 256, "num_predict": 8, "seed": 1}


def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=60)


def test_generate_non_streaming_and_streaming(server: RunningServer) -> None:
    c = client(server)
    one = c.generate(model="tiny", prompt="hello", options=TINY_OPTIONS, stream=False)
    assert one.done and one.done_reason == "length"
    assert one.eval_count == 8 and one.prompt_eval_count and one.prompt_eval_count > 0
    assert one.total_duration and one.eval_duration and one.prompt_eval_duration
    assert one.context and len(one.context) >= one.prompt_eval_count
    chunks = list(c.generate(model="tiny", prompt="hello", options=TINY_OPTIONS, stream=True))
    assert chunks[-1].done and not any(ch.done for ch in chunks[:-1])
    assert "".join(ch.response for ch in chunks) == one.response  # deterministic at seed 1


def test_chat_streams_messages(server: RunningServer) -> None:
    c = client(server)
    parts = list(
        c.chat(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            options={**TINY_OPTIONS, "temperature": 0},
            stream=True,
        )
    )
    assert parts[-1].done and parts[-1].done_reason == "length"
    assert all(p.message.role == "assistant" for p in parts)
    whole = c.chat(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        options={**TINY_OPTIONS, "temperature": 0},
    )
    assert whole.message.content == "".join(p.message.content or "" for p in parts)


def test_stop_parameter_from_request(server: RunningServer) -> None:
    c = client(server)
    base = c.generate(model="tiny", prompt="x", options={**TINY_OPTIONS, "temperature": 0})
    text = base.response
    assert len(text) > 2
    stop = text[1:3]
    cut = c.generate(
        model="tiny", prompt="x", options={**TINY_OPTIONS, "temperature": 0, "stop": [stop]}
    )
    assert cut.done_reason == "stop" and stop not in cut.response
    assert text.startswith(cut.response)


def test_errors_have_status_and_json_body(server: RunningServer) -> None:
    c = client(server)
    with pytest.raises(ollama.ResponseError) as err:
        c.generate(model="missing", prompt="x")
    assert err.value.status_code == 404 and err.value.error == "model 'missing' not found"
    bad = httpx.post(
        server.url + "/api/generate",
        json={"model": "tiny", "prompt": "x", "options": {"num_ctx": "big"}},
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == 'option "num_ctx" must be of type integer'
    think = httpx.post(
        server.url + "/api/chat",
        json={"model": "tiny", "messages": [{"role": "user", "content": "x"}], "think": "loud"},
    )
    assert think.status_code == 400 and "invalid think value" in think.json()["error"]
    fmt = httpx.post(
        server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "format": 5}
    )
    assert fmt.status_code == 400 and "invalid format" in fmt.json()["error"]
    for body in (b"", b"{nope", b'{"model": "tiny", "prompt": 7}'):
        r = httpx.post(server.url + "/api/generate", content=body)
        assert r.status_code == 400 and "error" in r.json()
    assert httpx.get(server.url + "/").status_code == 200


def test_format_json_is_enforced(server: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    r = client(server).generate(
        model="tiny",
        prompt="x",
        format=schema,
        options={**TINY_OPTIONS, "temperature": 0, "num_predict": 64},
    )
    if r.done_reason == "stop":  # the grammar closed the object before the token budget
        assert isinstance(json.loads(r.response)["ok"], bool)
    else:
        assert r.response.lstrip().startswith("{")


def test_embeddings(server: RunningServer) -> None:
    c = client(server)
    out = c.embed(model="tiny", input=["one", "two words"], options={"num_thread": 1})
    assert len(out.embeddings) == 2
    for vec in out.embeddings:
        assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, rel_tol=1e-4)
    legacy = c.embeddings(model="tiny", prompt="one", options={"num_thread": 1})
    assert len(legacy.embedding) == len(out.embeddings[0])
    bad = httpx.post(server.url + "/api/embed", json={"model": "tiny", "input": [1, 2]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid input type"


def test_ps_load_and_unload(server: RunningServer) -> None:
    c = client(server)
    loaded = httpx.post(server.url + "/api/generate", json={"model": "tiny", "keep_alive": "1m"})
    assert loaded.json()["done_reason"] == "load"
    models = c.ps().models
    assert [m.model for m in models] == ["tiny:latest"]
    assert models[0].size_vram == 0 and models[0].expires_at is not None
    gone = httpx.post(server.url + "/api/generate", json={"model": "tiny", "keep_alive": 0})
    assert gone.json()["done_reason"] == "unload"
    assert c.ps().models == []


def test_client_disconnect_frees_the_slot(server: RunningServer) -> None:
    body = {"model": "tiny", "prompt": "x", "options": {**TINY_OPTIONS, "num_predict": 2000}}
    with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=30) as r:
        first = next(r.iter_lines())
        assert json.loads(first)["done"] is False
    # With one parallel slot, this only completes if the abandoned stream let go of it.
    result: dict[str, object] = {}

    def follow_up() -> None:
        result["r"] = client(server).generate(model="tiny", prompt="y", options=TINY_OPTIONS)

    thread = threading.Thread(target=follow_up)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and result["r"].done  # type: ignore[attr-defined]


@pytest.mark.slow
def test_qwen_answers_through_the_ollama_client(
    ollama_models: Path, qwen_gguf: Path, tmp_path: Path
) -> None:
    store = Store(ollama_models)
    modelfile = Path(__file__).parents[2] / "examples" / "Modelfile"
    text = modelfile.read_text().replace(
        "FROM ./models/qwen2.5-coder-0.5b-instruct-q4.gguf", f"FROM {qwen_gguf}"
    )
    cache = BuildCache.for_store(store.root)
    execute_build(plan_build(parse(text), store, cache), ModelName.parse("qwen"), store, cache)
    with running_server(store.root, tmp_path) as server:
        c = client(server)
        reply = c.chat(
            model="qwen",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            options={"temperature": 0, "num_predict": 32},
        )
        assert "Paris" in reply.message.content
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
        }
        structured = c.chat(
            model="qwen",
            messages=[{"role": "user", "content": "Name the capital of France as JSON."}],
            format=schema,
            options={"temperature": 0, "num_predict": 64},
        )
        data = json.loads(structured.message.content)
        assert set(data) >= {"city", "country"} and "Paris" in data["city"]


def test_full_queue_answers_503_at_once(tiny_store: Store, tmp_path: Path) -> None:
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "0"}
    with running_server(tiny_store.root, tmp_path, env=env) as server:
        # Random weights never stop: this one runs until its 2048-token context is full.
        slow = {**TINY_OPTIONS, "num_ctx": 2048, "num_predict": -1}
        long = {"model": "tiny", "prompt": "x", "options": slow}
        with httpx.stream("POST", server.url + "/api/generate", json=long, timeout=30) as busy:
            lines = busy.iter_lines()  # keep it: a dropped iterator closes the connection
            next(lines)  # the only slot is now taken
            second = httpx.post(
                server.url + "/api/generate",
                json={"model": "tiny", "prompt": "y", "options": slow},
                timeout=10,
            )
            assert second.status_code == 503
            assert second.json() == {
                "error": "server busy, please try again.  maximum pending requests exceeded"
            }
        after = httpx.post(
            server.url + "/api/generate",
            json={"model": "tiny", "prompt": "y", "options": TINY_OPTIONS, "stream": False},
            timeout=30,
        )
        assert after.status_code == 200 and after.json()["done"] is True


def test_oversized_body_is_refused(server: RunningServer) -> None:
    huge = b'{"model": "tiny", "prompt": "' + b"a" * (33 * 1024 * 1024) + b'"}'
    r = httpx.post(server.url + "/api/generate", content=huge, timeout=60)
    assert r.status_code == 413
    assert r.json() == {
        "error": "request body too large: over 33554432 bytes (MODELKIT_MAX_BODY_BYTES)"
    }
    assert httpx.get(server.url + "/").status_code == 200


def test_images_are_refused_for_models_without_a_projector(server: RunningServer) -> None:
    image = "iVBORw0KGgo="  # any base64: the model cannot see it anyway
    r = httpx.post(
        server.url + "/api/generate", json={"model": "tiny", "prompt": "x", "images": [image]}
    )
    assert r.status_code == 400 and "does not support images" in r.json()["error"]
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": "tiny", "messages": [{"role": "user", "content": "x", "images": [image]}]},
    )
    assert r.status_code == 400 and "does not support images" in r.json()["error"]


def test_context_shift_can_be_turned_off(server: RunningServer) -> None:
    options = {**TINY_OPTIONS, "num_ctx": 32, "num_predict": 50}
    # raw: a two-token prompt (the model's SYSTEM and MESSAGE would fill most of 32 tokens)
    body = {"model": "tiny", "prompt": "hello", "raw": True, "stream": False, "options": options}
    shifted = httpx.post(server.url + "/api/generate", json=body, timeout=30).json()
    assert shifted["done_reason"] == "length" and shifted["eval_count"] == 50
    stopped = httpx.post(
        server.url + "/api/generate", json={**body, "shift": False}, timeout=30
    ).json()
    assert stopped["done_reason"] == "length"
    assert stopped["prompt_eval_count"] + stopped["eval_count"] == 32


def test_debug_render_only_returns_the_prompt_without_running(server: RunningServer) -> None:
    url = server.url
    body = {"model": "tiny", "prompt": "hello", "_debug_render_only": True}
    rendered = httpx.post(url + "/api/generate", json=body, timeout=30).json()
    assert rendered["response"] == "" and rendered["done"] is False
    info = rendered["_debug_info"]
    assert info["image_count"] == 0
    prompt = info["rendered_template"]
    # The model's SYSTEM and MESSAGE, then the prompt, in the GGUF's ChatML template.
    assert prompt.index("You are terse.") < prompt.index("hi") < prompt.index("hello")
    assert prompt.endswith("<|im_start|>assistant\n")
    chat = {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "2+2"},
        ],
        "_debug_render_only": True,
    }
    answer = httpx.post(url + "/api/chat", json=chat, timeout=30).json()
    assert answer["message"] == {"role": "assistant", "content": ""}
    text = answer["_debug_info"]["rendered_template"]
    assert "Be exact." in text and "You are terse." not in text and "2+2" in text
    raw = {**body, "raw": True}
    assert httpx.post(url + "/api/generate", json=raw, timeout=30).json()["_debug_info"] == {
        "rendered_template": "hello",
        "image_count": 0,
    }
    # Nothing was loaded to answer these.
    assert httpx.get(url + "/api/ps", timeout=30).json()["models"] == []
