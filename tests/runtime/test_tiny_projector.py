"""The tiny projector fixture is a real mmproj: libmtmd loads it beside the tiny model,
tokenizes an image into the promised number of tokens and encodes it to n_embd floats."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp")
mtmd = pytest.importorskip("llama_cpp.mtmd_cpp")

import llama_cpp  # noqa: E402

from fixtures.tiny_projector import (  # noqa: E402
    tiny_image_bytes,
    tiny_projector_image_tokens,
    write_tiny_projector_gguf,
)

N_EMBD = 64  # write_tiny_gguf's default embedding length
N_IMAGE_TOKENS = tiny_projector_image_tokens()


@dataclass
class Vision:
    llm: llama_cpp.Llama
    ctx: Any  # mtmd_context_p


@pytest.fixture(scope="module")
def vision(tiny_gguf: Path, tiny_projector_gguf: Path) -> Iterator[Vision]:
    llm = llama_cpp.Llama(str(tiny_gguf), n_ctx=256, n_threads=1, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 1
    params.print_timings = False
    ctx = mtmd.mtmd_init_from_file(str(tiny_projector_gguf).encode(), llm.model, params)
    assert ctx, "mtmd_init_from_file refused the tiny projector"
    try:
        yield Vision(llm, ctx)
    finally:
        mtmd.mtmd_free(ctx)
        llm.close()


def bitmap_from(ctx: Any, data: bytes) -> Any:
    buf = (ctypes.c_uint8 * len(data)).from_buffer(bytearray(data))
    return mtmd.mtmd_helper_bitmap_init_from_buf(ctx, buf, len(data), False)


class Tokenized:
    """``mtmd_tokenize`` of ``text`` with one bitmap per media marker; frees on close."""

    def __init__(self, ctx: Any, text: str, images: list[bytes]) -> None:
        self.bitmaps = [bitmap_from(ctx, data) for data in images]
        assert all(self.bitmaps), "an image failed to decode"
        self.chunks = mtmd.mtmd_input_chunks_init()
        raw = text.encode()
        inp = mtmd.mtmd_input_text()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = raw, len(raw), True, True
        array = (mtmd.mtmd_bitmap_p_ctypes * len(self.bitmaps))(*self.bitmaps)
        self.result = mtmd.mtmd_tokenize(ctx, self.chunks, ctypes.byref(inp), array, len(array))

    def chunk(self, i: int) -> Any:
        return mtmd.mtmd_input_chunks_get(self.chunks, i)

    def image_chunks(self) -> list[Any]:
        n = mtmd.mtmd_input_chunks_size(self.chunks)
        return [
            self.chunk(i)
            for i in range(n)
            if mtmd.mtmd_input_chunk_get_type(self.chunk(i)) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
        ]

    def close(self) -> None:
        mtmd.mtmd_input_chunks_free(self.chunks)
        for bitmap in self.bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)


def prompt(n_images: int = 1) -> str:
    marker = mtmd.mtmd_default_marker().decode()
    return "Describe " + " and ".join([marker] * n_images) + " please."


def encode(ctx: Any, chunk: Any) -> list[float]:
    assert mtmd.mtmd_encode_chunk(ctx, chunk) == 0
    out = mtmd.mtmd_get_output_embd(ctx)
    n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
    return [out[i] for i in range(n * N_EMBD)]


def test_writer_is_deterministic(tmp_path: Path, tiny_projector_gguf: Path) -> None:
    again = write_tiny_projector_gguf(tmp_path / "again.gguf")
    assert again.read_bytes() == tiny_projector_gguf.read_bytes()
    assert write_tiny_projector_gguf(tmp_path / "other.gguf", seed=1).read_bytes() != (
        tiny_projector_gguf.read_bytes()
    )
    assert tiny_image_bytes() == tiny_image_bytes()


def test_projector_supports_vision(vision: Vision) -> None:
    assert mtmd.mtmd_support_vision(vision.ctx)
    assert not mtmd.mtmd_support_audio(vision.ctx)


def test_image_becomes_one_chunk_of_the_promised_tokens(vision: Vision) -> None:
    tok = Tokenized(vision.ctx, prompt(), [tiny_image_bytes()])
    try:
        assert tok.result == 0
        types = [
            mtmd.mtmd_input_chunk_get_type(tok.chunk(i))
            for i in range(mtmd.mtmd_input_chunks_size(tok.chunks))
        ]
        image = mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
        text = mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT
        assert types == [text, image, text]
        (chunk,) = tok.image_chunks()
        assert mtmd.mtmd_input_chunk_get_n_tokens(chunk) == N_IMAGE_TOKENS == 16
        assert mtmd.mtmd_input_chunk_get_n_pos(chunk) == N_IMAGE_TOKENS
        n_text = sum(mtmd.mtmd_input_chunk_get_n_tokens(tok.chunk(i)) for i in (0, 2))
        assert mtmd.mtmd_helper_get_n_tokens(tok.chunks) == n_text + N_IMAGE_TOKENS
        assert mtmd.mtmd_helper_get_n_pos(tok.chunks) == n_text + N_IMAGE_TOKENS
    finally:
        tok.close()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encode_gives_n_tokens_times_n_embd_floats(vision: Vision, fmt: str) -> None:
    tok = Tokenized(vision.ctx, prompt(), [tiny_image_bytes(fmt, size=(64, 48))])
    try:
        assert tok.result == 0
        (chunk,) = tok.image_chunks()
        values = encode(vision.ctx, chunk)
        assert len(values) == N_IMAGE_TOKENS * N_EMBD
        assert all(math.isfinite(v) for v in values)
        assert any(v != 0.0 for v in values)
    finally:
        tok.close()


def test_encoding_depends_on_the_pixels_only(vision: Vision) -> None:
    images = [tiny_image_bytes(seed=0), tiny_image_bytes(seed=0), tiny_image_bytes(seed=1)]
    tok = Tokenized(vision.ctx, prompt(3), images)
    try:
        assert tok.result == 0
        first, same, other = (encode(vision.ctx, c) for c in tok.image_chunks())
        assert first == same
        assert first != other
    finally:
        tok.close()


def test_markers_and_images_must_match(vision: Vision) -> None:
    tok = Tokenized(vision.ctx, prompt(2), [tiny_image_bytes()])
    try:
        assert tok.result != 0
    finally:
        tok.close()


def test_wider_text_model_is_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    wrong = write_tiny_projector_gguf(tmp_path / "wide.gguf", n_embd_text=128)
    llm = llama_cpp.Llama(str(tiny_gguf), n_ctx=64, n_threads=1, verbose=False)
    try:
        params = mtmd.mtmd_context_params_default()
        params.use_gpu, params.n_threads = False, 1
        assert not mtmd.mtmd_init_from_file(str(wrong).encode(), llm.model, params)
    finally:
        llm.close()


def test_text_model_decodes_the_image_embeddings(vision: Vision) -> None:
    # The whole prompt (text, image embeddings, text) goes through the tiny model's
    # context, ending at the position count mtmd promised.
    tok = Tokenized(vision.ctx, prompt(), [tiny_image_bytes()])
    try:
        assert tok.result == 0
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(vision.llm.ctx), True)
        new_n_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(
            vision.ctx, vision.llm.ctx, tok.chunks, 0, 0, 64, True, ctypes.byref(new_n_past)
        )
        assert rc == 0
        assert new_n_past.value == mtmd.mtmd_helper_get_n_pos(tok.chunks)
    finally:
        tok.close()
