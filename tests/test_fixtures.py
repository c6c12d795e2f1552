"""The shared fixtures produce models that gguf and llama.cpp really accept."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import gguf
import pytest

from fixtures.real_models import fetch_models
from fixtures.tiny_gguf import (
    CHATML_TEMPLATE,
    CONTROL_TOKENS,
    EOS_TOKEN,
    write_tiny_gguf,
    write_tiny_lora_gguf,
)
from modelkit.cpu import guarded_llama

PROMPT = "Hello world, the"


@pytest.fixture(scope="module")
def llama_cpp() -> ModuleType:
    return pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python is not installed (pip install 'modelkit[runtime]')",
    )


def _load(llama_cpp: ModuleType, path: Path, **kwargs: Any) -> Any:
    # guarded: llama.cpp's AMX kernels, where built in, crash on many CPUs (modelkit.cpu)
    return guarded_llama(str(path), n_ctx=256, n_threads=2, seed=0, verbose=False, **kwargs)


def _complete(llm: Any, prompt: str = PROMPT, max_tokens: int = 12) -> dict[str, Any]:
    return llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    assert field is not None, f"{key} missing"
    return field.contents()


# --------------------------------------------------------------------------- gguf level


def test_tiny_gguf_metadata_reads_back(tiny_gguf: Path) -> None:
    reader = gguf.GGUFReader(tiny_gguf)
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "general.type") == "model"
    assert _field(reader, "general.file_type") == gguf.LlamaFileType.ALL_F32
    assert _field(reader, "llama.block_count") == 2
    assert _field(reader, "llama.embedding_length") == 64
    assert _field(reader, "llama.context_length") == 2048
    assert _field(reader, "llama.attention.head_count") == 4
    assert _field(reader, "llama.rope.dimension_count") == 16
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.chat_template") == CHATML_TEMPLATE

    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) > 256
    assert _field(reader, "tokenizer.ggml.merges")  # llama.cpp rejects an empty list
    assert tokens[_field(reader, "tokenizer.ggml.eos_token_id")] == EOS_TOKEN
    for tok in CONTROL_TOKENS:
        assert types[tokens.index(tok)] == gguf.TokenType.CONTROL

    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    assert "blk.1.ffn_down.weight" in names
    assert tiny_gguf.stat().st_size < 1_000_000


def test_tiny_gguf_is_byte_deterministic(tiny_gguf_factory: Any) -> None:
    a = tiny_gguf_factory("a.gguf", seed=3)
    b = tiny_gguf_factory("b.gguf", seed=3)
    c = tiny_gguf_factory("c.gguf", seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_tiny_gguf_factory_variants(tiny_gguf_factory: Any) -> None:
    path = tiny_gguf_factory(
        chat_template=None,
        context_length=512,
        n_layers=1,
        extra_metadata={"general.description": "variant", "custom.flag": True},
    )
    reader = gguf.GGUFReader(path)
    assert reader.get_field("tokenizer.chat_template") is None
    assert _field(reader, "llama.context_length") == 512
    assert _field(reader, "llama.block_count") == 1
    assert _field(reader, "general.description") == "variant"
    assert _field(reader, "custom.flag") is True


def test_tiny_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture"):
        write_tiny_gguf(tmp_path / "x.gguf", architecture="mamba")
    with pytest.raises(ValueError, match="multiples of 32"):
        write_tiny_gguf(tmp_path / "x.gguf", n_embd=48, n_head=4, n_head_kv=4, file_type=7)
    with pytest.raises(ValueError, match="LoRA targets"):
        write_tiny_lora_gguf(tmp_path / "l.gguf", targets=["attn_z"])


def test_tiny_lora_metadata_reads_back(tiny_lora_gguf: Path) -> None:
    reader = gguf.GGUFReader(tiny_lora_gguf)
    assert _field(reader, "general.type") == "adapter"
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "adapter.type") == "lora"
    assert _field(reader, "adapter.lora.alpha") == pytest.approx(8.0)
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    # GGUF shapes are ggml order (fastest dimension first): lora_a [in, r], lora_b [r, out].
    assert shapes["blk.0.attn_q.weight.lora_a"] == (64, 4)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (4, 32)


def test_ollama_models_is_fresh_and_exported(ollama_models: Path) -> None:
    assert os.environ["OLLAMA_MODELS"] == str(ollama_models)
    assert ollama_models.is_dir()
    assert list(ollama_models.iterdir()) == []


def test_fetch_models_module_is_importable() -> None:
    module = fetch_models()
    assert module.QWEN_SIZE == 491_400_064
    assert len(module.QWEN_PACKAGES) == 6
    assert callable(module.qwen_path) and callable(module.gemma_path)


# --------------------------------------------------------------------------- llama.cpp


def test_tiny_gguf_generates_deterministically(llama_cpp: ModuleType, tiny_gguf: Path) -> None:
    first = _complete(_load(llama_cpp, tiny_gguf))
    second = _complete(_load(llama_cpp, tiny_gguf))
    # usage counts can exceed max_tokens when a byte token splits a UTF-8 character
    assert first["usage"]["completion_tokens"] >= 12
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]


def test_tiny_gguf_chat_template_is_used(llama_cpp: ModuleType, tiny_gguf: Path) -> None:
    llm = _load(llama_cpp, tiny_gguf)
    assert llm.metadata["tokenizer.chat_template"] == CHATML_TEMPLATE
    reply = llm.create_chat_completion(
        [{"role": "user", "content": "hi"}], max_tokens=6, temperature=0.0
    )
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("file_type", "architecture"),
    [
        (gguf.LlamaFileType.MOSTLY_F16, "llama"),
        (gguf.LlamaFileType.MOSTLY_Q8_0, "llama"),
        (gguf.LlamaFileType.MOSTLY_Q4_0, "llama"),
        (gguf.LlamaFileType.ALL_F32, "qwen2"),
    ],
)
def test_tiny_gguf_variants_load(
    llama_cpp: ModuleType, tiny_gguf_factory: Any, file_type: int, architecture: str
) -> None:
    path = tiny_gguf_factory(file_type=file_type, architecture=architecture)
    llm = _load(llama_cpp, path)
    assert llm.metadata["general.architecture"] == architecture
    assert int(llm.metadata["general.file_type"]) == file_type
    out = _complete(llm, max_tokens=4)
    assert out["usage"]["completion_tokens"] >= 4
    assert out["choices"][0]["finish_reason"] == "length"


def test_tiny_lora_applies(llama_cpp: ModuleType, tiny_gguf: Path, tiny_lora_gguf: Path) -> None:
    base = _complete(_load(llama_cpp, tiny_gguf))["choices"][0]["text"]
    llm = _load(llama_cpp, tiny_gguf, lora_path=str(tiny_lora_gguf))
    # llama-cpp-python does not raise on a bad adapter: the handle is a NULL pointer.
    assert llm._lora_adapter
    with_lora = _complete(llm)
    assert with_lora["usage"]["completion_tokens"] >= 12
    assert with_lora["choices"][0]["text"] != base
    assert _complete(llm)["choices"][0]["text"] == with_lora["choices"][0]["text"]


def test_mismatched_lora_gives_null_handle(
    llama_cpp: ModuleType, tiny_gguf: Path, tmp_path: Path
) -> None:
    wrong = write_tiny_lora_gguf(tmp_path / "wrong.gguf", n_embd=128)
    llm = _load(llama_cpp, tiny_gguf, lora_path=str(wrong))
    assert not llm._lora_adapter  # never generate with this one: llama.cpp would crash


# --------------------------------------------------------------------------- real models


@pytest.mark.slow
def test_qwen_answers_paris(llama_cpp: ModuleType, qwen_gguf: Path) -> None:
    llm = guarded_llama(str(qwen_gguf), n_ctx=512, n_threads=2, verbose=False)
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
    reply = llm.create_chat_completion(
        [{"role": "user", "content": "What is the capital of France?"}],
        temperature=0.0,
        max_tokens=16,
    )
    assert "Paris" in reply["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_gemma_is_a_base_model(llama_cpp: ModuleType, gemma_gguf: Path) -> None:
    llm = guarded_llama(str(gemma_gguf), n_ctx=256, n_threads=2, verbose=False)
    assert llm.metadata["general.architecture"] == "gemma3"
    assert "tokenizer.chat_template" not in llm.metadata
    out = llm.create_completion("The capital of France is", max_tokens=8, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0
