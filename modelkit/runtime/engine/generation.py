"""One request's generation as the batcher sees it: the prompt still to evaluate, the tokens
sampled so far, and the text they make (UTF-8 pieces, stop strings, log probabilities),
handed out as :class:`Chunk` deltas and a last chunk with the statistics.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelkit.runtime.engine.results import Chunk, GenerationStats
from modelkit.runtime.engine.sampling import Sampler
from modelkit.runtime.engine.vision import ImagePiece, Images
from modelkit.runtime.engine.weights import Weights
from modelkit.runtime.logprobs import Logprob, PendingLogprobs, token_logprobs
from modelkit.runtime.options import SamplingParams
from modelkit.runtime.stop import StopMatcher

__all__ = ["Emit", "Generation", "merged"]

Emit = Callable[["Chunk | BaseException"], None]
"""Where a generation's chunks go, then either its last chunk (``done``) or its error. Called
on the batcher's thread: it must not block."""


@dataclass(eq=False)
class Generation:
    """A request to generate from ``prompt`` (tokens that fit the context), and its progress.

    ``budget`` caps the sampled tokens (0: none; Ollama's cap of ten contexts applies to an
    unlimited request that may shift the context). ``shift`` allows context shifts.
    """

    prompt: list[int]
    params: SamplingParams
    sampler: Sampler
    emit: Emit
    budget: int
    shift: bool = True
    started: int = field(default_factory=time.perf_counter_ns)
    load_duration: int = 0
    truncated: int = 0
    """Prompt tokens dropped to fit the context (told with the first chunk)."""
    images: Images = field(default_factory=Images)
    """The prompt's images; their cells in ``prompt`` are pseudo-tokens (see .vision)."""
    # -- progress, kept by the batcher's thread --
    slot: int = -1
    cached: int = 0
    """Prompt tokens reused from the slot's KV cache instead of being evaluated."""
    evaluated: int = 0
    """Prompt tokens in the KV cache (reused or decoded)."""
    generated: list[int] = field(default_factory=list)
    discarded: int = 0
    """Tokens dropped from the KV cache by context shifts."""
    cancelled: bool = False
    """Set from any thread when the client left: the batcher drops the request."""
    done_reason: str | None = None
    admitted_at: int = 0
    first_token_at: int = 0
    _matcher: StopMatcher = field(init=False)
    _utf8: Any = field(init=False)
    _pending: PendingLogprobs = field(init=False, default_factory=PendingLogprobs)

    def __post_init__(self) -> None:
        self._matcher = StopMatcher(self.params.stop)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def prefilling(self) -> bool:
        return self.evaluated < len(self.prompt)

    @property
    def n_past(self) -> int:
        """Tokens of this sequence in the KV cache once the last sampled one is decoded."""
        return len(self.prompt) + len(self.generated) - self.discarded

    @property
    def done(self) -> bool:
        return self.done_reason is not None

    @property
    def image_due(self) -> ImagePiece | None:
        """The image whose cells come next in the prompt, if one does."""
        piece = self.images.next_after(self.evaluated)
        return piece if piece is not None and piece.start == self.evaluated else None

    def close(self) -> None:
        """Free what the request holds outside Python (its sampler, its image chunks)."""
        self.sampler.close()
        self.images.close()

    def admit(self, slot: int, cached: int) -> None:
        self.slot, self.cached, self.evaluated = slot, cached, cached
        self.admitted_at = time.perf_counter_ns()

    def take(self, token: int, weights: Weights) -> Chunk | None:
        """Add a sampled token: the text it releases (None: nothing yet). Sets
        ``done_reason`` when this token ends the generation, but for a full context, which
        the batcher shifts or ends (:meth:`context_full`)."""
        if not self.generated:
            self.first_token_at = time.perf_counter_ns()
        self.generated.append(token)
        if weights.is_eog(token):
            self.done_reason = "stop"
            return None
        piece = weights.token_bytes(token)
        text = self._utf8.decode(piece)
        logits = self.sampler.logits
        if logits is not None and self.sampler.top_logprobs is not None:
            entry = token_logprobs(logits, token, self.sampler.top_logprobs, weights.token_bytes)
            self._pending.add(entry, len(text))
        out = self._matcher.feed(text) if text else ""
        if self._matcher.stopped:
            self.done_reason = "stop"
        elif self.budget > 0 and len(self.generated) >= self.budget:
            self.done_reason = "length"
        if not out:
            return None
        return self._first_told(Chunk(out, logprobs=self._pending.release(len(out))))

    def _first_told(self, chunk: Chunk) -> Chunk:
        chunk.truncated, self.truncated = self.truncated, 0
        return chunk

    def context_full(self, n_ctx: int) -> bool:
        return self.n_past >= n_ctx

    def finish(self, weights: Weights, reason: str | None = None) -> Chunk:
        """The last chunk: held-back text and the statistics."""
        now = time.perf_counter_ns()
        if reason is not None:
            self.done_reason = reason
        rest = self._matcher.feed(self._utf8.decode(b"", final=True)) + self._matcher.flush()
        first = self.first_token_at or now
        stats = GenerationStats(
            done_reason=self.done_reason or "stop",
            prompt_eval_count=len(self.prompt),
            cached_count=self.cached,
            prompt_eval_duration=max(first - (self.admitted_at or first), 1),
            eval_count=len(self.generated),
            eval_duration=max(now - first, 1),
            load_duration=self.load_duration,
            total_duration=now - self.started,
            # an image's cells are not tokens a client could send back
            context=[t for t in self.prompt if t >= 0]
            + [t for t in self.generated if not weights.is_eog(t)],
        )
        last = Chunk(rest, done=True, stats=stats, logprobs=self._pending.release(len(rest)))
        return self._first_told(last)

    def kv_tokens(self) -> list[int]:
        """What the slot's KV cache holds at the end, for the next request to reuse (empty
        after a context shift: it no longer holds a prefix of the tokens)."""
        if self.discarded:
            return []
        return self.prompt + self.generated[:-1]  # the last sampled token was not decoded


def merged(chunks: list[Chunk]) -> Chunk:
    """Deltas and a last chunk as one chunk (a request that does not stream)."""
    last = chunks[-1]
    logprobs: list[Logprob] = [lp for c in chunks for lp in c.logprobs]
    text = "".join(c.text for c in chunks)
    truncated = sum(c.truncated for c in chunks)
    return Chunk(text, done=True, stats=last.stats, logprobs=logprobs, truncated=truncated)
