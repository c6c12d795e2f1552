"""Helpers shared by the store tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MINIMAL_GGUF_SHA256 = "89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad"


def minimal_gguf_bytes() -> bytes:
    """Reference §3.9: GGUF v3, no tensors, one key general.architecture = "test"."""
    key = b"general.architecture"
    value = b"test"
    return (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<IQ", 8, len(value))
        + value
    )


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    file_type: int | None = 15,
    general_type: str | None = None,
    chat_template: str | None = "{{ messages }}",
    extra: dict[str, object] | None = None,
    tensors: bool = True,
) -> Path:
    """A small GGUF written with gguf.GGUFWriter (two tensors: 4×8 + 8 = 40 parameters)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    if general_type is not None:
        writer.add_type(general_type)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_context_length(2048)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    writer.add_token_list([f"t{i}".encode() for i in range(100)])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (extra or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
    if tensors:
        writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
        writer.add_tensor("output_norm.weight", np.ones((8,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
