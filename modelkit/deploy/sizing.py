"""What a deployed model needs: memory and CPU from its GGUF metadata, and how long it may take
to load (the budget of the ``startupProbe`` and of Compose's ``start_period``).

Memory, the pod's request and limit alike (a model server must not be the first thing the
kernel kills when its node runs short, so requests = limits)::

    weights   every weight blob of the model (model, projectors, adapters, drafts): llama.cpp
              maps them, and the pages count against the container's memory
    KV cache  n_layer × (num_ctx × parallel) cells × n_head_kv × (head_dim_k + head_dim_v)
              × bytes per element (f16: 2); head_dim = n_embd / n_head unless the GGUF says
              (``attention.key_length`` / ``value_length``); a per-layer ``head_count_kv``
              array is summed over the layers
    compute   llama.cpp's graph buffer for one micro-batch of n_batch tokens: the logits
              (n_vocab × n_batch × 4 bytes) plus the attention scores (n_head × cells ×
              n_batch × 4 bytes, the worst case without flash attention)
    overhead  RUNTIME_OVERHEAD (300 MiB): the server and runner Python processes, llama.cpp's
              own allocations, the tokenizer

The sum is rounded up to a whole MiB. CPU is requested, not limited (a limit throttles decoding
in bursts): the model's ``num_thread`` when its Modelfile sets one, else DEFAULT_CPU.

The startup budget assumes a slow disk: STARTUP_BASE_SECONDS plus the weights read at
LOAD_BYTES_PER_SECOND (20 MiB/s), so a 5 GB GGUF gets about 5 minutes before a probe gives up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelkit.errors import DeployError, ModelNameError
from modelkit.names import ModelName
from modelkit.store import (
    WEIGHT_MEDIA_TYPES,
    GGUFInfo,
    Store,
    read_gguf_info,
    view_model,
)

__all__ = [
    "DEFAULT_CPU",
    "DEFAULT_NUM_BATCH",
    "KV_BYTES_PER_ELEMENT",
    "LOAD_BYTES_PER_SECOND",
    "MIB",
    "RUNTIME_OVERHEAD",
    "STARTUP_BASE_SECONDS",
    "ModelFacts",
    "Resources",
    "estimate_resources",
    "model_facts",
    "startup_budget_seconds",
]

MIB = 1024 * 1024
RUNTIME_OVERHEAD = 300 * MIB
DEFAULT_CPU = 2
"""Cores requested when the model leaves ``num_thread`` automatic."""
DEFAULT_NUM_BATCH = 512
"""Ollama's ``num_batch`` default: the tokens of one prompt-processing micro-batch."""
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
"""Bytes per K or V element for each ``OLLAMA_KV_CACHE_TYPE`` (quantized: blocks of 32)."""
LOAD_BYTES_PER_SECOND = 20 * MIB
STARTUP_BASE_SECONDS = 60


@dataclass(frozen=True)
class ModelFacts:
    """What the generators need to know about one stored model."""

    name: str
    """The model's display name (``tiny:latest``), as ``MODELKIT_PRELOAD`` and the metrics'
    ``model`` label write it."""
    digest: str
    """``sha256:<hex>`` of the model's manifest."""
    weights_bytes: int
    """Every weight blob (model, projectors, adapters, drafts)."""
    total_bytes: int
    """The whole model as stored (config and every layer)."""
    architecture: str
    n_layer: int
    n_head: int
    kv_heads: tuple[int, ...]
    """KV heads of each layer (one value per layer)."""
    key_length: int
    value_length: int
    n_vocab: int
    context_length: int | None
    """The context the model was trained with (the engine clamps num_ctx to it)."""
    parameters: dict[str, Any]
    """The model's PARAMETERs (``num_ctx``, ``num_thread``, ...)."""

    def param_int(self, key: str) -> int | None:
        value = self.parameters.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)


@dataclass(frozen=True)
class Resources:
    """A container's resources, each part of the memory kept for the curious."""

    num_ctx: int
    parallel: int
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    overhead_bytes: int
    cpu: int

    @property
    def memory_bytes(self) -> int:
        raw = self.weights_bytes + self.kv_cache_bytes + self.compute_bytes + self.overhead_bytes
        return math.ceil(raw / MIB) * MIB

    @property
    def memory(self) -> str:
        """Kubernetes quantity (``1234Mi``)."""
        return f"{self.memory_bytes // MIB}Mi"


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _facts_from_gguf(info: GGUFInfo, where: str) -> dict[str, Any]:
    shape = info.kv_shape()
    if shape is None:
        raise DeployError(
            f"{where}: the GGUF lacks {info.architecture}'s layer, embedding or attention head "
            "counts (one KV head count per layer); cannot size the KV cache"
        )
    n_vocab = info.array_lengths.get("tokenizer.ggml.tokens") or _int(info.arch_key("vocab_size"))
    return {
        "architecture": info.architecture,
        "n_layer": shape.n_layer,
        "n_head": shape.n_head,
        "kv_heads": shape.kv_heads,
        "key_length": shape.key_length,
        "value_length": shape.value_length,
        "n_vocab": n_vocab or 0,
        "context_length": info.context_length,
    }


def model_facts(store: Store, name: str) -> ModelFacts:
    """Read a stored model's manifest, parameters and GGUF header.

    Raises :class:`DeployError` when ``name`` is not a model in ``store`` or its weights
    cannot be sized."""
    try:
        parsed = ModelName.parse(name)
    except ModelNameError as err:
        raise DeployError(f"{name!r} is not a model name: {err}") from None
    if not store.has_model(parsed):
        raise DeployError(
            f"model {parsed.display} is not in the store at {store.root} "
            "(build or pull it first; set OLLAMA_MODELS to use another store)"
        )
    view = view_model(store, parsed)
    if view.model is None:
        raise DeployError(f"model {view.name.display} has no weights (no model layer)")
    where = view.name.display
    info = read_gguf_info(store.blob_path(view.model.digest))
    manifest = view.stored.manifest
    weights = sum(d.size for d in manifest.layers if d.media_type in WEIGHT_MEDIA_TYPES)
    return ModelFacts(
        name=view.name.display,
        digest=f"sha256:{view.stored.digest}",
        weights_bytes=weights,
        total_bytes=manifest.total_size,
        parameters=dict(view.parameters),
        **_facts_from_gguf(info, where),
    )


def estimate_resources(
    facts: ModelFacts,
    *,
    num_ctx: int,
    parallel: int,
    kv_cache_type: str = "f16",
) -> Resources:
    """The memory and CPU a server of ``facts`` needs with ``parallel`` slots of ``num_ctx``."""
    if num_ctx <= 0 or parallel <= 0:
        raise DeployError("num_ctx and parallel must be positive")
    try:
        per_element = KV_BYTES_PER_ELEMENT[kv_cache_type]
    except KeyError:
        raise DeployError(f"unknown KV cache type {kv_cache_type!r}") from None
    # The engine clamps num_ctx to the trained context (see modelkit.runtime.options).
    ctx = min(num_ctx, facts.context_length) if facts.context_length else num_ctx
    cells = ctx * parallel
    per_cell = sum(kv * (facts.key_length + facts.value_length) for kv in facts.kv_heads)
    kv_bytes = math.ceil(cells * per_cell * per_element)
    n_batch = facts.param_int("num_batch") or DEFAULT_NUM_BATCH
    compute = n_batch * 4 * (facts.n_vocab + facts.n_head * cells)
    threads = facts.param_int("num_thread") or 0
    return Resources(
        num_ctx=ctx,
        parallel=parallel,
        weights_bytes=facts.weights_bytes,
        kv_cache_bytes=kv_bytes,
        compute_bytes=compute,
        overhead_bytes=RUNTIME_OVERHEAD,
        cpu=threads if threads > 0 else DEFAULT_CPU,
    )


def startup_budget_seconds(weights_bytes: int) -> int:
    """Seconds a model of ``weights_bytes`` may take to load before probes give up."""
    return STARTUP_BASE_SECONDS + math.ceil(weights_bytes / LOAD_BYTES_PER_SECOND)
