"""Choosing one request's next token: its sampler chain (penalties, top-k/p, temperature,
seed), its ``format`` grammar, and the logits kept for log probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from modelkit.runtime.constrain import GrammarGuard
from modelkit.runtime.engine.weights import internals, llama
from modelkit.runtime.options import SamplingParams

__all__ = ["Sampler"]


class Sampler:
    """A request's own sampling state: the chain (its penalty history and RNG), the grammar
    guard (None: unconstrained), and with ``top_logprobs`` the logits of the last sample."""

    def __init__(
        self,
        params: SamplingParams,
        *,
        n_ctx: int,
        n_vocab: int,
        guard: GrammarGuard | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        self.n_vocab = n_vocab
        self.guard = guard
        self.top_logprobs = top_logprobs
        """None: no log probabilities; else how many alternatives to report with each."""
        self.logits: np.ndarray[Any, np.dtype[np.float32]] | None = None
        """The logits the last token was sampled from (only kept for log probabilities)."""
        self.chain: Any = internals().LlamaSampler()
        self._build(params, n_ctx)
        self.repeat_last_n = params.repeat_last_n

    def _build(self, p: SamplingParams, n_ctx: int) -> None:
        s = self.chain
        last_n = n_ctx if p.repeat_last_n < 0 else p.repeat_last_n
        if last_n != 0 and (
            p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0
        ):
            s.add_penalties(
                self.n_vocab, last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty
            )
        if p.temperature <= 0:
            s.add_greedy()
            return
        if p.top_k > 0:
            s.add_top_k(p.top_k)
        if 0 < p.typical_p < 1:
            s.add_typical(p.typical_p, 1)
        if 0 < p.top_p < 1:
            s.add_top_p(p.top_p, 1)
        if p.min_p > 0:
            s.add_min_p(p.min_p, 1)
        s.add_temp(p.temperature)
        s.add_dist(p.seed)

    def prime(self, prompt: Seq[int]) -> None:
        """Feed the prompt to the repetition penalties, as llama.cpp's server does."""
        if self.repeat_last_n == 0:
            return
        history = prompt if self.repeat_last_n < 0 else prompt[-self.repeat_last_n :]
        for token in history:
            self.chain.accept(token)

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token from the logits at batch position ``idx`` of ``ctx`` (a llama
        context wrapper), accepted into the chain and the grammar. Call it before the next
        decode of ``ctx``, which overwrites the logits."""
        if self.top_logprobs is not None:
            raw = llama().llama_get_logits_ith(ctx.ctx, idx)
            self.logits = np.ctypeslib.as_array(raw, shape=(self.n_vocab,)).copy()
        if self.guard is None:
            token: int = self.chain.sample(ctx, idx)  # the chain accepts it itself
            return token
        guarded: int = self.guard.sample(self.chain.sampler, ctx.ctx, idx)
        self.chain.accept(guarded)
        self.guard.accept(guarded)
        return guarded

    def close(self) -> None:
        self.chain.close()
        if self.guard is not None:
            self.guard.close()
