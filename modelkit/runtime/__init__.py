"""Running models: Ollama options, a llama.cpp engine (llama-cpp-python), stop handling.

Public API (import from ``modelkit.runtime``):

- :class:`Options`, :func:`resolve_options`, :class:`RuntimeSettings` (or
  ``modelkit.config.Settings``, through :class:`RuntimeDefaults`),
  :class:`OptionTypeError` — Ollama's options with its precedence and type checks;
- :class:`LoadParams`, :func:`load_params`, :class:`SamplingParams`,
  :func:`sampling_params`, :data:`UNSUPPORTED_OPTIONS` — their mapping onto llama.cpp;
- :class:`LoadedModel`, :class:`Chunk`, :class:`GenerationStats`,
  :class:`Embeddings` — a loaded model, generation and embeddings;
- :class:`StopMatcher`, :func:`apply_stops` — stop strings on streamed text.

``llama_cpp`` is imported only when a model is loaded.
"""

from modelkit.runtime.engine import Chunk, Embeddings, GenerationStats, LoadedModel
from modelkit.runtime.options import (
    DEFAULT_NUM_CTX,
    KV_CACHE_TYPES,
    UNSUPPORTED_OPTIONS,
    LoadParams,
    Options,
    OptionTypeError,
    RuntimeDefaults,
    RuntimeSettings,
    SamplingParams,
    apply_option_map,
    default_num_ctx,
    load_params,
    resolve_options,
    sampling_params,
)
from modelkit.runtime.stop import StopMatcher, apply_stops

__all__ = [
    "DEFAULT_NUM_CTX",
    "KV_CACHE_TYPES",
    "UNSUPPORTED_OPTIONS",
    "Chunk",
    "Embeddings",
    "GenerationStats",
    "LoadParams",
    "LoadedModel",
    "OptionTypeError",
    "Options",
    "RuntimeDefaults",
    "RuntimeSettings",
    "SamplingParams",
    "StopMatcher",
    "apply_option_map",
    "apply_stops",
    "default_num_ctx",
    "load_params",
    "resolve_options",
    "sampling_params",
]
