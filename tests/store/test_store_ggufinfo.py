"""read_gguf_info on GGUFs written with gguf.GGUFWriter, checked against gguf.GGUFReader."""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

import gguf
import pytest
from storetest_helpers import minimal_gguf_bytes, write_tiny_gguf

from modelkit.errors import StoreError
from modelkit.store import (
    GGUFInfo,
    GoFloat32,
    ModelConfig,
    file_type_name,
    go_json_dumps,
    human_parameter_count,
    is_gguf,
    read_gguf_info,
)


def test_tiny_gguf(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.general_type is None
    assert info.parameter_count == 4 * 8 + 8
    assert info.human_parameter_count == "40"
    assert info.file_type_id == 15 and info.file_type == "Q4_K_M"
    assert info.context_length == 2048
    assert info.embedding_length == 8
    assert info.block_count == 1
    assert info.chat_template == "{{ messages }}"
    assert not info.is_adapter and not info.is_projector
    assert info.media_type_kind == "model"
    assert [t.name for t in info.tensors] == ["token_embd.weight", "output_norm.weight"]
    assert info.tensors[0].shape == (8, 4)  # GGUF order: innermost first
    assert info.tensors[0].type_name == "F32"
    # Long arrays are skipped but their length is known; float32 values keep Go's encoding.
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.array_lengths["tokenizer.ggml.tokens"] == 100
    eps = info.metadata["llama.attention.layer_norm_rms_epsilon"]
    assert isinstance(eps, GoFloat32) and go_json_dumps(eps, newline=False) == b"0.000001"
    full = read_gguf_info(tiny_gguf, max_array_len=1000)
    assert full.metadata["tokenizer.ggml.tokens"][:2] == ["t0", "t1"]  # type: ignore[index]

    config = ModelConfig.from_gguf(info)
    assert config.to_bytes() == (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
        b'"model_type":"40","file_type":"Q4_K_M","architecture":"amd64","os":"linux"}\n'
    )


def test_agrees_with_gguf_reader(tiny_gguf: Path) -> None:
    ours = read_gguf_info(tiny_gguf, max_array_len=10_000)
    reader = gguf.GGUFReader(str(tiny_gguf))
    theirs = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert set(theirs) == set(ours.metadata)
    for key, value in theirs.items():
        assert ours.metadata[key] == pytest.approx(value), key
    assert [t.name for t in reader.tensors] == [t.name for t in ours.tensors]
    assert sum(int(t.n_elements) for t in reader.tensors) == ours.parameter_count
    assert [tuple(int(x) for x in t.shape) for t in reader.tensors] == [
        t.shape for t in ours.tensors
    ]


def test_minimal_gguf(minimal_gguf: Path) -> None:
    info = read_gguf_info(minimal_gguf)
    assert (info.architecture, info.parameter_count, info.file_type) == ("test", 0, "unknown")
    assert info.context_length is None and info.chat_template is None
    assert is_gguf(minimal_gguf)


def test_missing_architecture_and_file_type(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    path = tmp_path / "empty.gguf"
    path.write_bytes(data)
    info = read_gguf_info(path)
    assert info.architecture == "unknown" and info.file_type == "unknown"
    f32 = write_tiny_gguf(tmp_path / "f32.gguf", file_type=0)
    assert read_gguf_info(f32).file_type == "unknown"  # 0 reads as missing, like Ollama
    none = write_tiny_gguf(tmp_path / "none.gguf", file_type=None)
    assert read_gguf_info(none).file_type_id is None


def test_adapter_and_projector_detection(tmp_path: Path) -> None:
    adapter = write_tiny_gguf(tmp_path / "lora.gguf", general_type="adapter")
    assert read_gguf_info(adapter).is_adapter
    assert read_gguf_info(adapter).media_type_kind == "adapter"
    for general_type in ("projector", "mmproj"):
        p = write_tiny_gguf(tmp_path / f"{general_type}.gguf", general_type=general_type)
        info = read_gguf_info(p)
        assert info.is_projector and not info.is_adapter and info.media_type_kind == "projector"
    clip = write_tiny_gguf(
        tmp_path / "clip.gguf", arch="clip", extra={"clip.has_vision_encoder": True}
    )
    assert read_gguf_info(clip).is_projector
    clip_text = write_tiny_gguf(tmp_path / "clip-text.gguf", arch="clip")
    assert not read_gguf_info(clip_text).is_projector

    # A vision tower without a language model (vision.block_count but no block_count).
    import gguf as g

    w = g.GGUFWriter(str(tmp_path / "vision.gguf"), arch="gemma3")
    w.add_uint32("gemma3.vision.block_count", 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert read_gguf_info(tmp_path / "vision.gguf").is_projector
    both = write_tiny_gguf(
        tmp_path / "vlm.gguf", arch="gemma3", extra={"gemma3.vision.block_count": 4}
    )
    assert not read_gguf_info(both).is_projector  # has block_count: a full model


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1K"),
        (135_000, "135K"),
        (1_000_000, "1M"),
        (494_032_768, "494.03M"),
        (630_167_424, "630.17M"),
        (1_000_000_000, "1B"),
        (8_030_261_248, "8.0B"),
        (7_000_000_000, "7B"),
        (1_500_000_000, "1.5B"),
    ],
)
def test_human_parameter_count(n: int, text: str) -> None:
    assert human_parameter_count(n) == text


def test_file_type_names() -> None:
    assert file_type_name(15) == "Q4_K_M"
    assert file_type_name(1) == "F16"
    assert file_type_name(32) == "BF16"
    assert file_type_name(0) == "unknown"
    assert file_type_name(None) == "unknown"
    assert file_type_name(4) == "unknown"


def test_not_a_gguf(tmp_path: Path) -> None:
    text = tmp_path / "model.bin"
    text.write_bytes(b"this is not a gguf file at all")
    assert not is_gguf(text)
    assert not is_gguf(tmp_path / "missing.gguf")
    with pytest.raises(StoreError, match="not a GGUF file"):
        read_gguf_info(text)
    short = tmp_path / "short"
    short.write_bytes(b"GG")
    with pytest.raises(StoreError, match="not a GGUF"):
        read_gguf_info(short)
    with pytest.raises(StoreError, match="cannot read"):
        read_gguf_info(tmp_path / "missing.gguf")
    bad_version = tmp_path / "v9.gguf"
    bad_version.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    with pytest.raises(StoreError, match="unsupported GGUF version"):
        read_gguf_info(bad_version)


def test_truncated_gguf(tmp_path: Path, tiny_gguf: Path) -> None:
    data = minimal_gguf_bytes()
    for cut in (12, 30, 50, 67):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(StoreError, match=r"truncated|not a GGUF"):
            read_gguf_info(p)
    # A huge string length must not be trusted.
    evil = tmp_path / "evil.gguf"
    evil.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**62) + b"x" * 40)
    with pytest.raises(StoreError, match="truncated"):
        read_gguf_info(evil)
    whole = tiny_gguf.read_bytes()
    header_cut = tmp_path / "header-cut.gguf"
    header_cut.write_bytes(whole[:200])
    with pytest.raises(StoreError):
        read_gguf_info(header_cut)


QWEN = Path(
    os.environ.get(
        "MODELKIT_QWEN_GGUF",
        str(Path.home() / ".cache/modelkit-test-models/qwen2.5-coder-0.5b-instruct-q4.gguf"),
    )
)


@pytest.mark.skipif(not QWEN.exists(), reason="Qwen2.5-Coder 0.5B GGUF not cached")
def test_real_qwen_gguf() -> None:
    info = read_gguf_info(QWEN)
    assert info.architecture == "qwen2"
    assert info.file_type == "Q4_K_M"
    assert info.context_length == 32768 and info.embedding_length == 896
    assert info.block_count == 24 and len(info.tensors) == 291
    assert info.parameter_count == 630_167_424
    assert info.array_lengths["tokenizer.ggml.tokens"] == 151_936
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template


def test_big_endian_and_v1_headers(tmp_path: Path) -> None:
    key, value = b"general.architecture", b"test"
    be = (
        b"GGUF"
        + struct.pack(">IQQ", 3, 0, 2)
        + struct.pack(">Q", len(key))
        + key
        + struct.pack(">IQ", 8, len(value))
        + value
        + struct.pack(">Q", 17)
        + b"general.file_type"
        + struct.pack(">II", 4, 15)
    )
    p = tmp_path / "be.gguf"
    p.write_bytes(be)
    info = read_gguf_info(p)
    assert info.big_endian and info.architecture == "test" and info.file_type == "Q4_K_M"
    v1 = (
        b"GGUF"
        + struct.pack("<III", 1, 0, 1)
        + struct.pack("<I", len(key))
        + key
        + struct.pack("<II", 8, len(value))
        + value
    )
    p1 = tmp_path / "v1.gguf"
    p1.write_bytes(v1)
    info1 = read_gguf_info(p1)
    assert info1.version == 1 and info1.architecture == "test"


def test_kv_shape_from_the_header(tiny_gguf_factory: Any) -> None:
    info = read_gguf_info(tiny_gguf_factory())  # the suite's tiny llama, not this folder's
    shape = info.kv_shape()
    assert shape is not None  # 2 layers, 4 heads of 16, 2 KV heads
    assert (shape.n_layer, shape.n_head, shape.kv_heads) == (2, 4, (2, 2))
    assert (shape.key_length, shape.value_length) == (16, 16)
    assert info.kv_bytes_per_cell() == shape.bytes_per_cell(2) == (2 + 2) * 32 * 2

    def with_kv_heads(value: object) -> GGUFInfo:
        key = "llama.attention.head_count_kv"
        return dataclasses.replace(info, metadata={**info.metadata, key: value})

    layered = with_kv_heads([1, 0]).kv_shape()
    assert layered is not None and layered.kv_heads == (1, 0)
    assert with_kv_heads([1, 1, 1]).kv_shape() is None  # three counts for two layers
    assert dataclasses.replace(info, metadata={}).kv_shape() is None
