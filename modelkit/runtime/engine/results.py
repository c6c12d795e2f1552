"""What generation and embedding give back: text chunks, final statistics, embedding vectors.

Plain data, with no llama.cpp in sight: the server reads these from a runner's messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelkit.runtime.logprobs import Logprob

__all__ = ["Chunk", "Embeddings", "GenerationStats"]


@dataclass
class GenerationStats:
    """The final numbers of one generation, as Ollama reports them (durations in ns,
    measured with ``time.perf_counter_ns``).

    ``eval_count`` counts every sampled token, the end-of-generation token included (it is
    decoded work); ``context`` is the prompt's tokens followed by the generated ones, without
    the end-of-generation token. ``load_duration`` is how long this model took to load; a
    server that reuses a loaded model reports its own (near zero) wait instead.
    ``prompt_eval_count`` is the whole prompt, as in Ollama, even when ``cached_count`` of its
    first tokens were reused from the previous request's KV cache.
    """

    done_reason: str  # "stop" | "length"
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    load_duration: int
    total_duration: int
    context: list[int] = field(default_factory=list)
    cached_count: int = 0


@dataclass
class Chunk:
    """A piece of generated text; the last one has ``done`` set and carries ``stats``."""

    text: str
    done: bool = False
    stats: GenerationStats | None = None
    logprobs: list[Logprob] = field(default_factory=list)
    """Of the tokens whose text this chunk releases (when the request asked for them)."""
    truncated: int = 0
    """On a generation's first chunk: prompt tokens dropped to fit the context."""

    @property
    def done_reason(self) -> str | None:
        return self.stats.done_reason if self.stats else None


@dataclass
class Embeddings:
    """Normalized embedding vectors and the number of tokens evaluated to make them."""

    vectors: list[list[float]]
    prompt_eval_count: int
