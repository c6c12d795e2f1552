"""Images through the real server: a model built from a tiny model and a tiny projector sees
them on /api/generate, /api/chat, /v1/chat/completions and /v1/responses (JPEG, PNG, WebP);
bad images are 400s that name the problem; ``modelkit test`` cases carry their images."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from fixtures.cli import run_cli
from fixtures.server import RunningServer, running_server
from fixtures.tiny_projector import tiny_image_bytes, tiny_projector_image_tokens
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import MEDIA_TYPE_PROJECTOR, Store

PARAMS = "PARAMETER num_predict 6\nPARAMETER num_ctx 256\nPARAMETER num_thread 1\n"
OPTIONS = {"temperature": 0, "seed": 1}


def build(store: Store, name: str, modelfile: str) -> None:
    cache = BuildCache.for_store(store.root)
    execute_build(plan_build(parse(modelfile), store, cache), ModelName.parse(name), store, cache)


@pytest.fixture
def vision_store(
    ollama_models: Path, tiny_gguf: Path, tiny_projector_gguf: Path, tmp_path: Path
) -> Store:
    """``seer`` (the tiny model with its projector) and ``blind`` (the tiny model alone)."""
    model = shutil.copy(tiny_gguf, tmp_path / "model.gguf")
    projector = shutil.copy(tiny_projector_gguf, tmp_path / "eyes.gguf")
    store = Store(ollama_models)
    build(store, "seer", f"FROM {model}\nFROM {projector}\n{PARAMS}")
    build(store, "blind", f"FROM {model}\n{PARAMS}")
    return store


@pytest.fixture
def server(vision_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(vision_store.root, tmp_path) as running:
        yield running


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_built_model_has_a_projector_layer(vision_store: Store) -> None:
    stored = vision_store.read_manifest(ModelName.parse("seer"))
    kinds = [layer.media_type for layer in stored.manifest.layers]
    assert kinds.count(MEDIA_TYPE_PROJECTOR) == 1


def test_generate_and_chat_see_images(server: RunningServer) -> None:
    c = ollama.Client(host=server.url, timeout=60)
    plain = c.generate(model="seer", prompt="what is it?", options=OPTIONS)
    seen = c.generate(
        model="seer", prompt="what is it?", images=[tiny_image_bytes()], options=OPTIONS
    )
    assert seen.done and seen.eval_count == 6
    assert plain.prompt_eval_count is not None and seen.prompt_eval_count is not None
    # the image's positions are in the prompt (its tag's few text tokens are not)
    extra = seen.prompt_eval_count - plain.prompt_eval_count
    assert tiny_projector_image_tokens() - 4 <= extra <= tiny_projector_image_tokens() + 1
    history = [{"role": "user", "content": "look", "images": [b64(tiny_image_bytes(seed=4))]}]
    first = c.chat(model="seer", messages=history, options=OPTIONS)
    history += [
        {"role": "assistant", "content": first.message.content},
        {"role": "user", "content": "and again?"},
    ]
    second = c.chat(model="seer", messages=history, options=OPTIONS)
    assert second.done and second.prompt_eval_count is not None
    assert second.prompt_eval_count > first.prompt_eval_count  # type: ignore[operator]


def test_the_rendered_prompt_carries_ollamas_image_tags(server: RunningServer) -> None:
    body = {
        "model": "seer",
        "messages": [{"role": "user", "content": "hi", "images": [b64(tiny_image_bytes())]}],
        "_debug_render_only": True,
    }
    info = httpx.post(server.url + "/api/chat", json=body, timeout=60).json()["_debug_info"]
    assert "[img-0] hi" in info["rendered_template"] and info["image_count"] == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_openai_image_parts_in_every_format(server: RunningServer, fmt: str) -> None:
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=60)
    data = b64(tiny_image_bytes(fmt=fmt))
    kind = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}[fmt]
    for url in (f"data:image/{kind};base64,{data}", data):  # a data URI, then bare base64
        answer = c.chat.completions.create(
            model="seer",
            max_tokens=4,
            temperature=0,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None and answer.usage.prompt_tokens > 16


def test_responses_input_image(server: RunningServer) -> None:
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=60)
    url = "data:image/png;base64," + b64(tiny_image_bytes())
    answer = c.responses.create(
        model="seer",
        max_output_tokens=4,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is it?"},
                    {"type": "input_image", "image_url": url, "detail": "auto"},
                ],
            }
        ],
    )
    assert answer.usage is not None and answer.usage.input_tokens > 16


def test_bad_images_are_400s_that_say_why(server: RunningServer) -> None:
    def generate(model: str, image: str) -> httpx.Response:
        body = {"model": model, "prompt": "x", "images": [image], "stream": False}
        return httpx.post(server.url + "/api/generate", json=body, timeout=60)

    cases = {
        b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 40): "image 0: cannot decode image",
        b64(tiny_image_bytes(fmt="GIF")): "image 0: unsupported image format GIF",
        "not base64!": "image 0: invalid base64 image data",
    }
    for image, message in cases.items():
        r = generate("seer", image)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    r = generate("blind", b64(tiny_image_bytes()))
    assert r.status_code == 400 and "does not support images" in r.json()["error"]
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={
            "model": "seer",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": "data:text/x,"}]}
            ],
        },
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["error"]["message"] == "invalid image input"


def test_modelkit_test_cases_carry_their_images(
    vision_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cat.png").write_bytes(tiny_image_bytes())
    spec = tmp_path / "vision.yaml"
    spec.write_text(
        "model: seer\ncases:\n  - name: look\n    prompt: What is it?\n"
        "    images: [cat.png]\n    assert: [{max_tokens: 6}]\n",
        encoding="utf-8",
    )
    code, out, err = run_cli("test", str(spec))
    assert code == 0, out + err
    assert "PASS" in out and "look" in out


def test_a_vision_model_gets_at_least_2048_positions(server: RunningServer) -> None:
    c = ollama.Client(host=server.url, timeout=60)
    c.generate(model="seer", prompt="hi", options=OPTIONS)  # PARAMETER num_ctx 256
    c.generate(model="blind", prompt="hi", options=OPTIONS)
    contexts = {
        m["name"]: m["context_length"] for m in httpx.get(server.url + "/api/ps").json()["models"]
    }
    assert contexts == {"seer:latest": 2048, "blind:latest": 256}  # as Ollama clamps it
