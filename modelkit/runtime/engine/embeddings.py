"""Embeddings: a context of their own on a model's weights (created on first use), one
pooled, L2-normalized vector per text, as Ollama's ``/api/embed`` gives them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from modelkit.errors import InferenceError, RequestError
from modelkit.runtime.engine.results import Embeddings
from modelkit.runtime.engine.weights import (
    POOLING_LAST,
    POOLING_NONE,
    POOLING_UNSPECIFIED,
    Weights,
    internals,
    llama,
)

__all__ = ["Embedder"]


class Embedder:
    """Embeds texts with ``weights`` in a context of ``n_ctx`` positions; thread-safe (one
    text at a time)."""

    def __init__(self, weights: Weights, context_params: Any, n_ctx: int) -> None:
        self.weights = weights
        self.n_ctx = n_ctx
        self._context_params = context_params
        self._lock = threading.Lock()
        self._ctx: Any = None
        self._batch: Any = None
        self._closed = False

    def embed(
        self, texts: Seq[str], *, truncate: bool = True, dimensions: int | None = None
    ) -> Embeddings:
        """One vector per text and the tokens evaluated. A text longer than the context is
        cut to fit (``truncate``) or refused; ``dimensions`` below the model's size keeps
        the first ones, normalized again. NaN/Inf in a result raises InferenceError."""
        vectors: list[list[float]] = []
        count = 0
        for text in texts:
            tokens = self.weights.tokenize(text)
            if not tokens:
                raise RequestError("cannot embed an empty input")
            if len(tokens) > self.n_ctx:
                if not truncate:
                    raise RequestError("the input length exceeds the context length")
                tokens = tokens[: self.n_ctx]
            count += len(tokens)
            vec = self._embed_tokens(tokens)
            if dimensions is not None and 0 < dimensions < len(vec):
                vec = vec[:dimensions]
            vectors.append(_normalize(vec))
        return Embeddings(vectors=vectors, prompt_eval_count=count)

    def _context(self) -> Any:
        if self._ctx is None:
            # A generative model has no pooling: one vector per text from its last token, as
            # Ollama's runner does.
            pooling = self.weights.pooling_type()
            if pooling in (POOLING_NONE, POOLING_UNSPECIFIED):
                pooling = POOLING_LAST
            self._ctx = self.weights.new_context(self._context_params(pooling))
            self._batch = internals().LlamaBatch(n_tokens=self.n_ctx, embd=0, n_seq_max=1)
        return self._ctx

    def _embed_tokens(self, tokens: list[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
        llama_cpp = llama()
        with self._lock:
            if self._closed:
                raise InferenceError("the model has been unloaded")
            ctx = self._context()
            llama_cpp.llama_memory_clear(ctx.memory, True)
            batch = self._batch.batch
            batch.n_tokens = len(tokens)
            for i, tok in enumerate(tokens):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            rc = llama_cpp.llama_decode(ctx.ctx, batch)
            if rc != 0:
                raise InferenceError(f"llama_decode failed with code {rc}")
            ptr = llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)
            if not ptr:
                raise InferenceError("the model returned no pooled embedding")
            vec = np.ctypeslib.as_array(ptr, shape=(self.weights.n_embd_out,)).astype(np.float64)
            llama_cpp.llama_memory_clear(ctx.memory, True)
        return vec

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for obj in (self._batch, self._ctx):
                if obj is not None:
                    obj.close()


def _normalize(vec: np.ndarray[Any, np.dtype[np.float64]]) -> list[float]:
    if not np.all(np.isfinite(vec)):
        raise InferenceError("the embedding contains NaN or Inf values")
    norm = math.sqrt(float(np.dot(vec, vec)))
    if norm > 0:
        vec = vec / norm
    return [float(x) for x in vec]
