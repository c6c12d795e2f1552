"""Per-architecture facts of the conversion: the GGUF architecture, its hyperparameters and
how each Hugging Face tensor becomes a GGUF tensor (llama.cpp's convert_hf_to_gguf rules)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from modelkit.build.convert.hf_config import HFConfig
from modelkit.errors import BuildError

Array = npt.NDArray[Any]
Metadata = list[tuple[str, Any]]  # (key, value): int → uint32, float → float32, str, bool


@dataclass(frozen=True)
class Family:
    """One supported model family."""

    arch: gguf.MODEL_ARCH
    metadata: Callable[[HFConfig], Metadata]
    transform: Callable[[str, Array, HFConfig], Array]
    default_pre: str  # llama.cpp pre-tokenizer for a byte-level BPE we cannot identify
    add_bos: bool  # when the tokenizer files do not say
    skip_prefixes: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()  # (prefix, replacement), first match wins
    tied_output: bool = False  # drop lm_head: llama.cpp reuses token_embd

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]

    def gguf_name(self, hf_name: str, n_blocks: int) -> str | None:
        """The GGUF name of a Hugging Face tensor; None for one that is not converted."""
        for prefix in self.skip_prefixes:
            if hf_name.startswith(prefix):
                return None
        for prefix, replacement in self.renames:
            if hf_name.startswith(prefix):
                hf_name = replacement + hf_name[len(prefix) :]
                break
        if hf_name.endswith(".rotary_emb.inv_freq") or (
            self.tied_output and hf_name == "lm_head.weight"
        ):
            return None
        mapped = _name_map(self.arch, n_blocks).get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise BuildError(f"cannot map tensor {hf_name} to a {self.arch_name} GGUF tensor")
        return mapped


@functools.cache
def _name_map(arch: gguf.MODEL_ARCH, n_blocks: int) -> gguf.TensorNameMap:
    return gguf.get_tensor_name_map(arch, n_blocks)


def _k(template: str, arch: str) -> str:
    return template.format(arch=arch)


def head_dim(config: HFConfig) -> int:
    value = config.get("head_dim")
    if isinstance(value, int):
        return value
    return config.int("hidden_size") // config.int("num_attention_heads")


def _common(config: HFConfig, arch: str) -> Metadata:
    keys = gguf.Keys
    heads = config.int("num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    out: Metadata = [
        (_k(keys.LLM.CONTEXT_LENGTH, arch), config.int("max_position_embeddings")),
        (_k(keys.LLM.EMBEDDING_LENGTH, arch), config.int("hidden_size")),
        (_k(keys.LLM.BLOCK_COUNT, arch), config.int("num_hidden_layers")),
        (_k(keys.LLM.FEED_FORWARD_LENGTH, arch), config.int("intermediate_size")),
        (_k(keys.Attention.HEAD_COUNT, arch), heads),
        (_k(keys.Attention.HEAD_COUNT_KV, arch), int(kv_heads)),
        (_k(keys.Attention.LAYERNORM_RMS_EPS, arch), config.float("rms_norm_eps", 1e-6)),
    ]
    return out


def _rope(config: HFConfig, arch: str, default_theta: float | None) -> Metadata:
    keys = gguf.Keys
    out: Metadata = []
    theta = config.get("rope_theta", default_theta)
    if isinstance(theta, (int, float)):
        out.append((_k(keys.Rope.FREQ_BASE, arch), float(theta)))
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict):
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind in ("linear", "yarn") and "factor" in scaling:
            out.append((_k(keys.Rope.SCALING_TYPE, arch), str(kind)))
            out.append((_k(keys.Rope.SCALING_FACTOR, arch), float(scaling["factor"])))
    return out


def _llama_metadata(config: HFConfig) -> Metadata:
    arch = "llama"
    out = _common(config, arch) + _rope(config, arch, None)
    out.append((_k(gguf.Keys.Rope.DIMENSION_COUNT, arch), head_dim(config)))
    if isinstance(config.get("head_dim"), int):
        out.append((_k(gguf.Keys.Attention.KEY_LENGTH, arch), head_dim(config)))
        out.append((_k(gguf.Keys.Attention.VALUE_LENGTH, arch), head_dim(config)))
    return out


def _permute(weights: Array, n_head: int) -> Array:
    """HF's rotary halves → llama.cpp's interleaved pairs, per head (q and k weights)."""
    shape = weights.shape
    split = weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(shape))


def _llama_transform(name: str, data: Array, config: HFConfig) -> Array:
    heads = config.int("num_attention_heads")
    if name.endswith("q_proj.weight"):
        return _permute(data, heads)
    if name.endswith("k_proj.weight"):
        return _permute(data, int(config.get("num_key_value_heads") or heads))
    return data


def llama3_rope_factors(config: HFConfig) -> Array | None:
    """Llama 3.1's frequency factors (``rope_freqs.weight``), when its config asks for them."""
    scaling = config.get("rope_scaling")
    if not isinstance(scaling, dict) or scaling.get("rope_type") != "llama3":
        return None
    base = config.float("rope_theta", 10000.0)
    dim = head_dim(config)
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling.get("original_max_position_embeddings", 8192))
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _plain(name: str, data: Array, config: HFConfig) -> Array:
    return data


def _qwen2_metadata(config: HFConfig) -> Metadata:
    return _common(config, "qwen2") + _rope(config, "qwen2", None)


def _gemma_metadata(arch: str, default_theta: float | None) -> Callable[[HFConfig], Metadata]:
    def metadata(config: HFConfig) -> Metadata:
        keys = gguf.Keys
        out = _common(config, arch) + _rope(config, arch, default_theta)
        out.append((_k(keys.Attention.KEY_LENGTH, arch), head_dim(config)))
        out.append((_k(keys.Attention.VALUE_LENGTH, arch), head_dim(config)))
        window = config.get("sliding_window")
        if arch == "gemma3" and isinstance(window, int):
            out.append((_k(keys.Attention.SLIDING_WINDOW, arch), window))
        return out

    return metadata


def _gemma_transform(name: str, data: Array, config: HFConfig) -> Array:
    """Gemma's RMSNorm multiplies by (1 + weight); llama.cpp's by weight."""
    if name.endswith("norm.weight"):
        return data.astype(np.float32) + 1.0
    return data


_LLAMA = Family(gguf.MODEL_ARCH.LLAMA, _llama_metadata, _llama_transform, "llama-bpe", True)
# Gemma 3's multimodal checkpoints: the text model under ``language_model``, the vision
# tower and projector beside it (not converted: they would be a separate mmproj GGUF).
_GEMMA3_SKIP = (
    "vision_tower.",
    "multi_modal_projector.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
)
_GEMMA3_RENAMES = (("model.language_model.", "model."), ("language_model.", ""))
_GEMMA3 = Family(
    gguf.MODEL_ARCH.GEMMA3,
    _gemma_metadata("gemma3", 1_000_000.0),
    _gemma_transform,
    "default",
    True,
    skip_prefixes=_GEMMA3_SKIP,
    renames=_GEMMA3_RENAMES,
    tied_output=True,
)
FAMILIES: dict[str, Family] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": Family(gguf.MODEL_ARCH.QWEN2, _qwen2_metadata, _plain, "qwen2", False),
    "GemmaForCausalLM": Family(
        gguf.MODEL_ARCH.GEMMA,
        _gemma_metadata("gemma", None),
        _gemma_transform,
        "default",
        True,
        tied_output=True,
    ),
    "Gemma3ForCausalLM": _GEMMA3,
    "Gemma3ForConditionalGeneration": _GEMMA3,  # its text model only
}


def family_for(config: HFConfig) -> Family:
    family = FAMILIES.get(config.architecture)
    if family is None:
        supported = ", ".join(sorted(FAMILIES))
        raise BuildError(
            f'unsupported architecture "{config.architecture}" (converting supports {supported})'
        )
    return family
