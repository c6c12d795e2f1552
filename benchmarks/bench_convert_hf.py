#!/usr/bin/env python3
"""How long converting a Hugging Face safetensors folder to GGUF takes, as a ratio against
reading its safetensors files once, both measured in the same process.

    python benchmarks/bench_convert_hf.py [--layers N] [--hidden N] [--dtype BF16|F32] [--keep DIR]

It writes a random-weight Llama-layout model (default: 6 layers, hidden 1024, BF16, about
170 MB of safetensors, a byte-level BPE tokenizer.json made by hand) into a temporary folder,
reads the files once (the page cache is then warm for every step), and times:

* ``read``            every safetensors byte read once (the baseline)
* ``sha256``          every safetensors byte hashed once (what any first build does)
* ``convert``         ``modelkit.build.convert.convert``: BF16 widened, q/k permuted, F16 out,
                      written to a temporary file, fsynced and renamed
* ``first build``     ``convert_cached`` into a fresh store: hash every input, then convert
* ``cache hit``       ``convert_cached`` again: stamps unchanged, no hashing, no conversion

The goal is a small constant ratio "convert / read": the conversion is one pass over the
weights, not a reload per tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modelkit.build.convert import convert, convert_cached, select_files
from modelkit.store import Store

_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tokenizer(folder: Path) -> int:
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    added = [
        {"id": len(vocab) + i, "content": s, "special": True, "normalized": False}
        for i, s in enumerate(specials)
    ]
    tokenizer: dict[str, Any] = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": _LLAMA3_REGEX},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        },
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "ignore_merges": True},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = {"bos_token": specials[0], "eos_token": specials[1], "chat_template": "{{ x }}"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return len(vocab) + len(added)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    header: dict[str, Any] = {}
    offset = 0
    raws = []
    for name, array in tensors.items():
        if dtype == "BF16":
            raw = (array.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = array.astype("<f4").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        raws.append(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for raw in raws:
            out.write(raw)


def write_model(folder: Path, layers: int, hidden: int, dtype: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    heads, kv, inter, vocab = hidden // 64, max(1, hidden // 256), hidden * 11 // 4, 8192
    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    config = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "vocab_size": vocab,
        "bos_token_id": 256,
        "eos_token_id": 257,
    }
    (folder / "config.json").write_text(json.dumps(config))
    head = 64
    shards: list[dict[str, np.ndarray]] = [{}, {}]
    shards[0]["model.embed_tokens.weight"] = rand(vocab, hidden)
    shards[1]["lm_head.weight"] = rand(vocab, hidden)
    shards[1]["model.norm.weight"] = np.ones(hidden, np.float32)
    for i in range(layers):
        p, shard = f"model.layers.{i}.", shards[i * 2 // layers]
        shard[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        shard[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        shard[p + "self_attn.q_proj.weight"] = rand(heads * head, hidden)
        shard[p + "self_attn.k_proj.weight"] = rand(kv * head, hidden)
        shard[p + "self_attn.v_proj.weight"] = rand(kv * head, hidden)
        shard[p + "self_attn.o_proj.weight"] = rand(hidden, heads * head)
        shard[p + "mlp.gate_proj.weight"] = rand(inter, hidden)
        shard[p + "mlp.up_proj.weight"] = rand(inter, hidden)
        shard[p + "mlp.down_proj.weight"] = rand(hidden, inter)
    for n, shard in enumerate(shards, 1):
        write_safetensors(folder / f"model-{n:05d}-of-00002.safetensors", shard, dtype)


def read_once(files: list[Path]) -> int:
    total = 0
    for path in files:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    return total


def hash_once(files: list[Path]) -> None:
    for path in files:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)


def timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dtype", choices=["BF16", "F32"], default="BF16")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as tmp:
        work = args.keep or Path(tmp)
        folder = work / "hf-model"
        write_model(folder, args.layers, args.hidden, args.dtype)
        weights = sorted(folder.glob("*.safetensors"))
        size = read_once(weights)  # warm the page cache for every step
        read = min(timed(lambda: read_once(weights)) for _ in range(3))
        hashed = min(timed(lambda: hash_once(weights)) for _ in range(2))
        selection = select_files(folder)
        out = work / "plain.gguf"
        conv = timed(lambda: convert(selection, out))
        store = Store(work / "store")
        first = timed(lambda: convert_cached(selection, store))
        hit = timed(lambda: convert_cached(selection, store))
        print(f"model: {args.layers} layers, hidden {args.hidden}, {args.dtype} safetensors")
        print(f"safetensors: {size / 1e6:.1f} MB in {len(weights)} files")
        print(f"GGUF (F16): {out.stat().st_size / 1e6:.1f} MB")
        print(f"read once:    {read:8.3f} s  ({size / read / 1e9:.2f} GB/s)")
        print(f"sha256 once:  {hashed:8.3f} s  ({size / hashed / 1e9:.2f} GB/s)")
        print(f"convert:      {conv:8.3f} s  ({size / conv / 1e9:.2f} GB/s of safetensors)")
        print(f"first build:  {first:8.3f} s  (hash inputs + convert)")
        print(f"cache hit:    {hit:8.3f} s")
        print(f"convert / read once: {conv / read:.1f}x")
        print(f"convert / sha256 once: {conv / hashed:.1f}x")


if __name__ == "__main__":
    main()
