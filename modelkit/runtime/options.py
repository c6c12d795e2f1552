"""Ollama's request options: defaults < model params < request options, and their mapping
onto llama.cpp (through llama-cpp-python's low-level API).

:func:`resolve_options` applies Ollama's ``Options.FromMap`` twice, first to the model's
``params`` layer and then to the request's ``options``. Like Go:

* unknown keys are logged (``invalid option provided``) and ignored; ``None`` values are
  skipped;
* a value of the wrong JSON type is an :class:`OptionTypeError`:
  ``option "<k>" must be of type integer|boolean|float32|string|array`` (or
  ``... must be of an array of strings``);
* JSON numbers into integer fields are truncated toward zero (``40.9`` → ``40``); numbers
  into float fields are rounded to float32 (``0.7`` stays ``0.7``).

The llama.cpp side splits into what must be fixed when the context is created
(:class:`LoadParams`, from :func:`load_params`) and what each request may choose
(:class:`SamplingParams`, from :func:`sampling_params`):

=====================  ==================================================================
Ollama option          llama.cpp
=====================  ==================================================================
num_ctx                ``n_ctx`` per sequence (clamped to ≥ 4 and to the trained context
                       by the engine); the context holds ``num_ctx × parallel`` cells
num_batch              ``n_batch`` / ``n_ubatch``
num_thread             ``n_threads`` and ``n_threads_batch``; 0 (auto) → ``os.cpu_count()``
                       (llama-cpp-python's own default is half the cores)
num_gpu                ``n_gpu_layers``; -1 (Ollama: auto-fit) → all layers
main_gpu               ``main_gpu`` (unset → 0)
use_mmap               model ``load_mode`` MMAP / NONE (unset → mmap)
(OLLAMA_FLASH_ATTENTION)  ``flash_attn_type`` AUTO / ENABLED / DISABLED
(OLLAMA_KV_CACHE_TYPE)    ``type_k`` / ``type_v`` f16, q8_0, q4_0 (quantized V needs flash
                       attention: it is switched on, or the cache falls back to f16 when
                       flash attention was turned off explicitly)
temperature            ``temp`` sampler; ≤ 0 → greedy
top_k                  ``top_k`` sampler (≤ 0 → disabled)
top_p, min_p,          ``top_p``, ``min_p``, ``typical`` samplers
typical_p
repeat_penalty,        one ``penalties`` sampler per request. repeat_last_n is *per request*
repeat_last_n,         here (the high-level ``Llama`` fixes it at load time as
presence_penalty,      ``last_n_tokens_size``; the engine builds its own sampler chain);
frequency_penalty      -1 → the context size, 0 → disabled
seed                   ``dist`` sampler seed; -1 → random (``LLAMA_DEFAULT_SEED``); other
                       values are taken modulo 2**32
stop                   matched on the decoded text by the engine (never leaks into output)
num_predict            the engine's token budget; -1 = until EOS (with a context shift
                       at most 10 × num_ctx tokens, as Ollama), -2 = fill the context
num_keep               the first tokens a context shift (and the truncation of an
                       over-long prompt) keeps
draft_num_predict      not supported: no speculative decoding (draft models)
=====================  ==================================================================

Options that cannot be mapped are listed in :data:`UNSUPPORTED_OPTIONS` with the reason, which
is logged when such an option is set by the model or the request.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from modelkit.config import env_bool, env_value
from modelkit.cpu import amx_allowed
from modelkit.errors import ModelkitError
from modelkit.modelfile.params import PARAMETER_TYPES, shortest_float32_repr

__all__ = [
    "DEFAULT_NUM_CTX",
    "KV_CACHE_TYPES",
    "UNSUPPORTED_OPTIONS",
    "LoadParams",
    "OptionTypeError",
    "Options",
    "RuntimeDefaults",
    "RuntimeSettings",
    "SamplingParams",
    "apply_option_map",
    "default_num_ctx",
    "load_params",
    "resolve_options",
    "sampling_params",
]

log = logging.getLogger(__name__)

DEFAULT_NUM_CTX: Final = 4096
"""Ollama's num_ctx default on a machine with under 23 GiB of VRAM (and on CPU)."""

LLAMA_DEFAULT_SEED: Final = 0xFFFFFFFF
"""llama.cpp's ``LLAMA_DEFAULT_SEED``: a random seed for the ``dist`` sampler."""

# ggml_type values of the KV cache types Ollama accepts.
KV_CACHE_TYPES: Final[dict[str, int]] = {"f16": 1, "q8_0": 8, "q4_0": 2}

UNSUPPORTED_OPTIONS: Final[dict[str, str]] = {
    "draft_num_predict": "speculative decoding with a draft model is not supported",
}
"""Ollama options with no llama-cpp-python equivalent, and why."""


class OptionTypeError(ModelkitError):
    """A request/model option whose JSON value has the wrong type (Ollama: HTTP 400)."""


class RuntimeDefaults(Protocol):
    """The settings the runtime reads: :class:`RuntimeSettings`, or ``modelkit.config.Settings``
    (which has the same fields, read from the same OLLAMA_* variables)."""

    @property
    def context_length(self) -> int: ...

    @property
    def flash_attention(self) -> bool | None: ...

    @property
    def kv_cache_type(self) -> str: ...

    @property
    def num_parallel(self) -> int: ...

    @property
    def amx(self) -> bool: ...


def default_num_ctx(settings: RuntimeDefaults | None) -> int:
    """num_ctx when neither the model nor the request sets it (OLLAMA_CONTEXT_LENGTH)."""
    if settings is not None and settings.context_length > 0:
        return settings.context_length
    return DEFAULT_NUM_CTX


@dataclass(frozen=True)
class RuntimeSettings:
    """The OLLAMA_* settings that shape how models are run.

    ``context_length`` 0 means auto (4096 here: no GPU tiers); ``flash_attention`` ``None``
    means auto; ``kv_cache_type`` ``""`` means f16; ``num_parallel`` is the number of
    sequences one loaded model decodes at once.
    """

    context_length: int = 0
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    num_parallel: int = 1
    amx: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if environ is None else environ

        def uint(key: str, default: int) -> int:
            text = env_value(env, key)
            if not text:
                return default
            try:
                value = int(text, 10)
            except ValueError:
                value = -1
            if value < 0:
                log.warning("invalid environment variable, using default: %s=%r", key, text)
                return default
            return value

        flash = None
        if env_value(env, "OLLAMA_FLASH_ATTENTION"):
            flash = env_bool(env, "OLLAMA_FLASH_ATTENTION")
        return cls(
            context_length=uint("OLLAMA_CONTEXT_LENGTH", 0),
            flash_attention=flash,
            kv_cache_type=env_value(env, "OLLAMA_KV_CACHE_TYPE").lower(),
            num_parallel=max(uint("OLLAMA_NUM_PARALLEL", 1), 1),
            amx=amx_allowed(env),
        )

    @property
    def default_num_ctx(self) -> int:
        return default_num_ctx(self)


@dataclass
class Options:
    """Ollama's ``api.Options`` (with its ``Runner``), at ``api.DefaultOptions`` values.

    ``explicit`` holds the names set by the model's params or the request (used to log
    unsupported options only when someone asked for them).
    """

    # Options (per request)
    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    # Runner (load time)
    num_ctx: int = DEFAULT_NUM_CTX
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0
    draft_num_predict: int = 4
    explicit: set[str] = field(default_factory=set, compare=False, repr=False)


_FIELD_NAMES: Final = frozenset(f.name for f in dataclasses.fields(Options)) - {"explicit"}
assert frozenset(PARAMETER_TYPES) == _FIELD_NAMES, "Options and PARAMETER_TYPES disagree"


def _to_float32(value: float) -> float:
    """A float64 stored into a Go float32 field, as the float of its shortest decimal form."""
    with np.errstate(over="ignore"):
        f32 = float(np.float32(value))
    if not math.isfinite(f32):
        return f32
    return float(shortest_float32_repr(f32))


def _coerce(key: str, kind: str, value: Any) -> Any:
    """One JSON value into an option field of ``kind``, or OptionTypeError (Go's texts)."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)  # Go: int64(float64) truncates toward zero
        raise OptionTypeError(f'option "{key}" must be of type integer')
    if kind == "float":
        if is_number:
            return _to_float32(float(value))
        raise OptionTypeError(f'option "{key}" must be of type float32')
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise OptionTypeError(f'option "{key}" must be of type boolean')
    # list: ``stop``
    if not isinstance(value, list):
        raise OptionTypeError(f'option "{key}" must be of type array')
    if not all(isinstance(item, str) for item in value):
        raise OptionTypeError(f'option "{key}" must be of an array of strings')
    return list(value)


def apply_option_map(opts: Options, values: Mapping[str, Any] | None) -> Options:
    """Ollama's ``Options.FromMap``: set ``opts`` from a JSON map, in place (also returned).

    Unknown keys are logged and skipped; ``None`` values are skipped; the first value of a
    wrong type raises :class:`OptionTypeError` (keys are checked in the map's order).
    """
    if not values:
        return opts
    for key, value in values.items():
        kind = PARAMETER_TYPES.get(key)
        if kind is None:
            log.warning("invalid option provided: option=%s", key)
            continue
        if value is None:
            continue
        setattr(opts, key, _coerce(key, kind, value))
        opts.explicit.add(key)
    return opts


def resolve_options(
    model_params: Mapping[str, Any] | None,
    request_options: Mapping[str, Any] | None,
    settings_defaults: RuntimeDefaults | None = None,
) -> Options:
    """Ollama's option precedence: defaults < model params < request options.

    ``settings_defaults`` supplies the defaults that come from the environment (num_ctx from
    ``OLLAMA_CONTEXT_LENGTH``). Raises :class:`OptionTypeError` for a value of the wrong type.
    """
    opts = Options(num_ctx=default_num_ctx(settings_defaults))
    apply_option_map(opts, model_params)
    apply_option_map(opts, request_options)
    return opts


# -- llama.cpp mapping ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadParams:
    """What llama.cpp fixes when the model and its context are created.

    Two requests whose LoadParams are equal can share a loaded model (Ollama's
    ``needsReload`` compares the same runner options).
    """

    n_ctx: int
    n_batch: int
    n_threads: int
    n_gpu_layers: int
    main_gpu: int
    use_mmap: bool
    flash_attn: int  # LLAMA_FLASH_ATTN_TYPE_*: -1 auto, 0 off, 1 on
    type_k: int  # ggml_type
    type_v: int
    n_seq_max: int = 1
    allow_amx: bool = False  # MODELKIT_AMX: llama.cpp's AMX kernels where built in (cpu.py)
    safe_kernels: bool = False  # llama.cpp's plain CPU kernels (after a crash with the others)


@dataclass(frozen=True)
class SamplingParams:
    """What each request chooses: the sampler chain, stop strings and the token budget."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    repeat_last_n: int
    presence_penalty: float
    frequency_penalty: float
    seed: int  # uint32; LLAMA_DEFAULT_SEED means random
    stop: tuple[str, ...]
    num_predict: int
    num_keep: int


def _log_unsupported(opts: Options, names: tuple[str, ...]) -> None:
    for name in names:
        if name in opts.explicit:
            log.warning("option %s is not supported: %s", name, UNSUPPORTED_OPTIONS[name])
        else:
            log.debug("option %s is not supported: %s", name, UNSUPPORTED_OPTIONS[name])


def load_params(opts: Options, settings: RuntimeDefaults | None = None) -> LoadParams:
    """The load-time half of the mapping (see the module's table)."""
    if settings is None:
        settings = RuntimeSettings()
    _log_unsupported(opts, ("draft_num_predict",))
    flash = {None: -1, False: 0, True: 1}[settings.flash_attention]
    kv = settings.kv_cache_type.lower() or "f16"
    if kv not in KV_CACHE_TYPES:
        log.warning("unsupported OLLAMA_KV_CACHE_TYPE %r, using f16", kv)
        kv = "f16"
    if kv != "f16":
        if flash == 0:
            log.warning("quantized KV cache %s needs flash attention, which is off: using f16", kv)
            kv = "f16"
        else:
            flash = 1
    threads = opts.num_thread if opts.num_thread > 0 else (os.cpu_count() or 1)
    return LoadParams(
        n_ctx=max(opts.num_ctx, 4),
        n_batch=max(opts.num_batch, 1),
        n_threads=threads,
        n_gpu_layers=0x7FFFFFFF if opts.num_gpu < 0 else opts.num_gpu,
        main_gpu=opts.main_gpu or 0,
        use_mmap=True if opts.use_mmap is None else opts.use_mmap,
        flash_attn=flash,
        type_k=KV_CACHE_TYPES[kv],
        type_v=KV_CACHE_TYPES[kv],
        n_seq_max=max(settings.num_parallel, 1),
        allow_amx=settings.amx,
    )


def sampling_params(opts: Options) -> SamplingParams:
    """The per-request half of the mapping (see the module's table)."""
    seed = LLAMA_DEFAULT_SEED if opts.seed == -1 else opts.seed % 2**32
    return SamplingParams(
        temperature=opts.temperature,
        top_k=opts.top_k,
        top_p=opts.top_p,
        min_p=opts.min_p,
        typical_p=opts.typical_p,
        repeat_penalty=opts.repeat_penalty,
        repeat_last_n=opts.repeat_last_n,
        presence_penalty=opts.presence_penalty,
        frequency_penalty=opts.frequency_penalty,
        seed=seed,
        stop=tuple(s for s in opts.stop if s),
        num_predict=opts.num_predict,
        num_keep=opts.num_keep,
    )
