"""One conversion: a selected Hugging Face folder → an F16 GGUF (F32 for 1-D tensors), the
tensors streamed one at a time into a temporary file that is fsynced and renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from modelkit.build.convert.families import Array, Family, family_for, llama3_rope_factors
from modelkit.build.convert.files import Selection
from modelkit.build.convert.hf_config import HFConfig, load_config
from modelkit.build.convert.tensors import TensorRef, index_tensors, read
from modelkit.build.convert.tokenizer import Vocab, load_vocab
from modelkit.errors import BuildError
from modelkit.store import create_locked_temp, remove_stale_temps

# (bytes of safetensors read, bytes in all) while converting.
ConvertProgress = Callable[[int, int], None]

CONVERSIONS = 0
"""How many conversions this process ran (tests check that a cache hit runs none)."""


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: its name and where its data comes from (a file, or made here)."""

    name: str
    source: TensorRef | None
    made: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.source is not None:
            return self.source.shape
        assert self.made is not None
        return tuple(self.made.shape)

    @property
    def dtype(self) -> type[np.floating[Any]]:
        return np.float32 if len(self.shape) <= 1 else np.float16


_REQUIRED_BLOCK = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_down")


def plan_tensors(
    family: Family, config: HFConfig, refs: dict[str, TensorRef]
) -> list[PlannedTensor]:
    n_blocks = config.int("num_hidden_layers")
    planned: list[PlannedTensor] = []
    for hf_name, ref in sorted(refs.items()):
        name = family.gguf_name(hf_name, n_blocks)
        if name is not None:
            planned.append(PlannedTensor(name, ref))
    factors = llama3_rope_factors(config) if family.arch == gguf.MODEL_ARCH.LLAMA else None
    if factors is not None:
        planned.append(PlannedTensor("rope_freqs.weight", None, factors))
    names = {t.name for t in planned}
    wanted = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{part}.weight" for i in range(n_blocks) for part in _REQUIRED_BLOCK
    ]
    missing = [n for n in wanted if n not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise BuildError(f"missing tensors in the safetensors files: {shown}")
    return planned


def _add_metadata(writer: gguf.GGUFWriter, pairs: list[tuple[str, Any]]) -> None:
    for key, value in pairs:
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, str(value))


def _add_vocab(writer: gguf.GGUFWriter, vocab: Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for kind, token_id in sorted(vocab.special.items()):
        writer.add_uint32(getattr(gguf.Keys.Tokenizer, f"{kind.upper()}_ID"), token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template is not None:
        writer.add_chat_template(vocab.chat_template)
    for name, template in sorted(vocab.named_templates.items()):
        writer.add_string(gguf.Keys.Tokenizer.CHAT_TEMPLATE_N.format(name=name), template)


def _vocab_for(family: Family, config: HFConfig, folder: Path) -> Vocab:
    vocab = load_vocab(
        folder, config, default_pre=family.default_pre, default_add_bos=family.add_bos
    )
    gemma = family.arch in (gguf.MODEL_ARCH.GEMMA, gguf.MODEL_ARCH.GEMMA3)
    if gemma and "<end_of_turn>" in vocab.tokens:  # Gemma's end of a chat turn
        vocab.special["eot"] = vocab.tokens.index("<end_of_turn>")
    return vocab


def _data(tensor: PlannedTensor, family: Family, config: HFConfig) -> Array:
    if tensor.source is None:
        assert tensor.made is not None
        data: Array = tensor.made
    else:
        data = family.transform(tensor.source.name, read(tensor.source), config)
    return np.ascontiguousarray(data.astype(tensor.dtype, copy=False))


def check_convertible(selection: Selection) -> None:
    """The cheap checks (config.json, architecture, a tokenizer), before any hashing."""
    family_for(load_config(selection.folder))
    folder = selection.folder
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer.model").is_file():
        raise BuildError(f"{folder}: no tokenizer.json or tokenizer.model")


def convert(selection: Selection, out: Path, progress: ConvertProgress | None = None) -> Path:
    """Convert ``selection`` into the GGUF file ``out`` (replaced atomically)."""
    global CONVERSIONS
    folder = selection.folder
    config = load_config(folder)
    family = family_for(config)
    refs = index_tensors(selection.top_weights)
    tensors = plan_tensors(family, config, refs)
    vocab = _vocab_for(family, config, folder)

    writer = gguf.GGUFWriter(path=None, arch=family.arch_name)
    name = config.get("_name_or_path")
    if isinstance(name, str) and name.strip("/"):
        # Only from the inputs (not the folder's name): the same inputs give the same bytes.
        writer.add_name(name.strip("/").rsplit("/", 1)[-1])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_metadata(writer, family.metadata(config))
    writer.add_vocab_size(len(vocab.tokens))
    _add_vocab(writer, vocab)
    for tensor in tensors:
        nbytes = int(np.prod(tensor.shape)) * np.dtype(tensor.dtype).itemsize
        writer.add_tensor_info(tensor.name, tensor.shape, np.dtype(tensor.dtype), nbytes)

    remove_stale_temps(out.parent)  # left by a conversion that was killed
    # Locked while this process lives (the writer opens it again by name): a later
    # conversion can tell it from one a killed build left.
    fd, tmp = create_locked_temp(out.parent, label="convert-")
    total = sum(t.source.nbytes for t in tensors if t.source is not None)
    done = 0
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in tensors:
            writer.write_tensor_data(_data(tensor, family, config))
            done += tensor.source.nbytes if tensor.source is not None else 0
            if progress is not None:
                progress(done, total)
        writer.flush()
        assert writer.fout is not None
        os.fsync(writer.fout[0].fileno())
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    CONVERSIONS += 1
    return out
