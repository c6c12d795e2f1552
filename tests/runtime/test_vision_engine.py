"""Images in the engine: a tiny projector's image fills its positions in the KV cache, the
same image is never encoded twice, other requests keep stepping while one encodes, and bad
images or prompts fail as requests."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.tiny_projector import tiny_image_bytes
from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.engine import Chunk, LoadedModel
from modelkit.runtime.engine import vision as vision_module
from modelkit.runtime.engine.slots import image_boundary
from modelkit.runtime.engine.vision import Vision, image_cell
from modelkit.runtime.engine.weights import llama
from modelkit.runtime.options import load_params, resolve_options
from modelkit.runtime.prompting import image_count, tag_images

REQUEST = {"num_thread": 1, "num_ctx": 512}
PROMPT = "<|im_start|>user\n[img-0] what is this?<|im_end|>\n<|im_start|>assistant\n"


def make_model(gguf: Path, projector: Path | None, slots: int = 2) -> LoadedModel:
    load = load_params(resolve_options(None, REQUEST))
    return LoadedModel(gguf, projector=projector, load=dataclasses.replace(load, n_seq_max=slots))


@pytest.fixture
def model(tiny_gguf: Path, tiny_projector_gguf: Path) -> Iterator[LoadedModel]:
    with make_model(tiny_gguf, tiny_projector_gguf) as m:
        yield m


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every image encode waits until this event is set (set at the end in any case)."""
    event = threading.Event()
    encode = Vision._encode

    def held_encode(self: Vision, piece: Any) -> Any:
        assert event.wait(60)
        return encode(self, piece)

    monkeypatch.setattr(Vision, "_encode", held_encode)
    yield event
    event.set()


def opts(model: LoadedModel, **extra: Any) -> Any:
    return model.resolve({**REQUEST, "num_predict": 6, "temperature": 0, **extra})


def run(model: LoadedModel, prompt: str, images: list[bytes], **kwargs: Any) -> list[Chunk]:
    return list(model.generate(prompt, opts(model, **kwargs), images=images))


def vision(model: LoadedModel) -> Vision:
    assert model.vision is not None
    return model.vision


def test_an_image_fills_its_positions_in_the_kv_cache(model: LoadedModel) -> None:
    image = tiny_image_bytes(seed=1)
    text_only = len(model.tokenize(PROMPT.replace("[img-0] ", "")))
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    gen = model.prepare(PROMPT, opts(model), items.put, images=[image])
    [piece] = gen.images.pieces
    assert piece.n_pos > 0 and piece.n_tokens == piece.n_pos  # no M-RoPE in this projector
    assert gen.prompt[piece.start : piece.start + piece.n_pos] == [image_cell(piece.digest)] * (
        piece.n_pos
    )
    assert all(t >= 0 for t in gen.prompt[: piece.start] + gen.prompt[piece.start + piece.n_pos :])
    model.submit(gen)
    chunks = [items.get(timeout=60) for _ in range(1)]
    while not (isinstance(chunks[-1], Chunk) and chunks[-1].done):
        assert not isinstance(chunks[-1], BaseException), chunks[-1]
        chunks.append(items.get(timeout=60))
    stats = chunks[-1].stats
    assert stats is not None and stats.eval_count == 6
    # the prompt's positions: its text (the tag's own tokens replaced) plus the image's
    assert stats.prompt_eval_count == len(gen.prompt)
    assert len(gen.prompt) - piece.n_pos in range(text_only - 2, text_only + 3)
    # the KV cache of the slot holds the prompt and all but the last sampled token
    top = llama().llama_memory_seq_pos_max(model.batcher.ctx.memory, gen.slot)
    assert top == len(gen.prompt) + stats.eval_count - 2
    assert vision(model).stats.encodes == 1
    assert all(t >= 0 for t in stats.context)  # no image pseudo-token goes back to a client


def test_the_same_image_again_is_not_encoded_again(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[int] = []
    decode = vision_module.decode_image

    def counted(data: bytes, index: int, **kwargs: Any) -> Any:
        decodes.append(index)
        return decode(data, index, **kwargs)

    monkeypatch.setattr(vision_module, "decode_image", counted)
    image = tiny_image_bytes(seed=2)
    first = run(model, PROMPT, [image])[-1].stats
    again = run(model, PROMPT, [image])[-1].stats
    assert first is not None and again is not None
    assert vision(model).stats.encodes == 1
    # the slot's cache held the image at the same place: only the last prompt token re-ran
    assert again.cached_count == again.prompt_eval_count - 1
    other_text = "<|im_start|>system\nbe brief<|im_end|>\n" + PROMPT
    run(model, other_text, [image])
    assert vision(model).stats.encodes == 1 and vision(model).stats.reused >= 1
    assert len(decodes) == 1  # its pixels were kept too
    run(model, PROMPT, [tiny_image_bytes(seed=3)])
    assert vision(model).stats.encodes == 2  # a different image is encoded


def test_other_requests_step_on_while_an_image_encodes(
    model: LoadedModel, released: threading.Event
) -> None:
    image_items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with_image = model.prepare(PROMPT, opts(model), image_items.put, images=[tiny_image_bytes()])
    model.submit(with_image)
    text = run(model, "<|im_start|>user\nhello<|im_end|>\n", [], num_predict=12)
    assert text[-1].done and text[-1].stats is not None and text[-1].stats.eval_count == 12
    assert image_items.empty()  # still waiting for its image
    released.set()
    last = None
    while last is None or not last.done:
        last = image_items.get(timeout=60)
        assert not isinstance(last, BaseException), last
    assert last.stats is not None and last.stats.eval_count == 6


def test_decodes_leave_the_projector_its_threads(
    tiny_gguf: Path,
    tiny_projector_gguf: Path,
    released: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = load_params(resolve_options(None, {**REQUEST, "num_thread": 2}))
    load = dataclasses.replace(load, n_seq_max=2)
    with LoadedModel(tiny_gguf, projector=tiny_projector_gguf, load=load) as m:
        assert vision(m).n_threads == 1  # half of them
        used: list[int] = []
        share = m.batcher._share_threads

        def spy() -> None:
            share()
            used.append(m.batcher._threads_set)

        monkeypatch.setattr(m.batcher, "_share_threads", spy)
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        m.submit(m.prepare(PROMPT, opts(m), items.put, images=[tiny_image_bytes()]))
        try:
            deadline = time.monotonic() + 30
            while not vision(m).encoding and time.monotonic() < deadline:
                time.sleep(0.001)
            used.clear()
            list(m.generate("hello", opts(m)))  # while the image encodes: one thread left
            assert used and set(used) == {1}
        finally:
            released.set()
        while not getattr(items.get(timeout=60), "done", True):
            pass
        used.clear()
        list(m.generate("hello again", opts(m)))
        assert set(used) == {2}  # all of them once it is done


def test_bad_images_and_prompts_fail_as_requests(model: LoadedModel) -> None:
    image = tiny_image_bytes()
    with pytest.raises(RequestError, match="image 0: cannot decode image"):
        model.prepare(PROMPT, opts(model), lambda _: None, images=[b"\x89PNG\r\n\x1a\nbroken"])
    with pytest.raises(RequestError, match="unsupported image format GIF"):
        model.prepare(PROMPT, opts(model), lambda _: None, images=[tiny_image_bytes(fmt="GIF")])
    with pytest.raises(RequestError, match="invalid image index: 1"):
        model.prepare("[img-1] hi", opts(model), lambda _: None, images=[image])
    with pytest.raises(RequestError, match="must go on after its last image"):
        model.prepare("hi [img-0]", opts(model), lambda _: None, images=[image])
    with pytest.raises(RequestError, match="over num_ctx"):
        model.prepare(PROMPT + "word " * 600, opts(model), lambda _: None, images=[image])
    # no tag: the image is not in the prompt (a message dropped to fit took it away)
    gen = model.prepare("hello", opts(model), lambda _: None, images=[image])
    assert not gen.images.pieces and all(t >= 0 for t in gen.prompt)
    gen.close()


def test_a_model_without_a_projector_refuses_images(tiny_gguf: Path) -> None:
    with make_model(tiny_gguf, None) as m:
        assert m.vision is None
        with pytest.raises(RequestError, match="does not support images"):
            m.prepare(PROMPT, opts(m), lambda _: None, images=[tiny_image_bytes()])


def test_a_projector_for_another_model_fails_at_load(
    tiny_gguf_factory: Any, tiny_projector_gguf: Path
) -> None:
    wider = tiny_gguf_factory(n_embd=128)
    with pytest.raises(InferenceError, match="projector"):
        make_model(wider, tiny_projector_gguf).close()


def test_the_cache_never_stops_inside_an_image() -> None:
    cell = image_cell("sha256:" + "ab" * 32)
    cells = [5, 6, cell, cell, cell, 7, 8]
    assert [image_boundary(cells, n) for n in range(8)] == [0, 1, 2, 2, 2, 5, 6, 7]


def test_images_are_tagged_as_ollama_tags_them() -> None:
    messages = [
        {"role": "user", "content": "first", "images": ["A"]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "compare [img] with this", "images": ["B", "C"]},
    ]
    tagged, images = tag_images(messages)
    assert images == ["A", "B", "C"]
    assert [m["content"] for m in tagged] == [
        "[img-0] first",
        "ok",
        "[img-2] compare [img-1] with this",
    ]
    assert image_count("".join(m["content"] for m in tagged)) == 3
    assert messages[0]["content"] == "first"  # the request's messages are left alone
