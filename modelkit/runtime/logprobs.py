"""Log probabilities of generated tokens (the API's ``logprobs``/``top_logprobs``): computed
from the model's raw logits at each step, and released with the text they produced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_TOP_LOGPROBS = 20
"""Ollama's limit for ``top_logprobs``."""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes}


@dataclass(frozen=True)
class Logprob:
    """The sampled token's log probability and, when asked, the most likely alternatives."""

    chosen: TokenLogprob
    top: list[TokenLogprob] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = self.chosen.to_json()
        if self.top:
            out["top_logprobs"] = [t.to_json() for t in self.top]
        return out


def token_logprobs(
    logits: np.ndarray[Any, np.dtype[np.float32]],
    token: int,
    top_n: int,
    piece: Callable[[int], bytes],
) -> Logprob:
    """``token``'s log-softmax over ``logits`` and the ``top_n`` most likely tokens;
    ``piece`` gives a token's bytes."""
    x = logits.astype(np.float64)
    peak = float(x.max())
    log_total = peak + float(np.log(np.exp(x - peak).sum()))

    def entry(tok: int) -> TokenLogprob:
        raw = piece(tok)
        text = raw.decode("utf-8", errors="replace")
        return TokenLogprob(text, float(x[tok]) - log_total, list(raw))

    top: list[TokenLogprob] = []
    if top_n > 0:
        n = min(top_n, len(x))
        best = np.argpartition(-x, n - 1)[:n]
        top = [entry(int(t)) for t in best[np.argsort(-x[best], kind="stable")]]
    return Logprob(entry(token), top)


class PendingLogprobs:
    """Log probabilities waiting for their token's text to be released.

    Stop-sequence matching holds text back, so a token's log probability goes out with the
    first character of its text; tokens whose text never goes out (cut by a stop string)
    are dropped, as their text is.
    """

    def __init__(self) -> None:
        self._queue: list[list[Any]] = []  # [Logprob, characters not yet released, sent?]

    def add(self, logprob: Logprob, chars: int) -> None:
        self._queue.append([logprob, chars, False])

    def release(self, chars: int) -> list[Logprob]:
        """The log probabilities of tokens whose text reached the ``chars`` characters just
        released (in order)."""
        out: list[Logprob] = []
        while self._queue:
            item = self._queue[0]
            if chars <= 0 and item[1] > 0:
                break
            if not item[2]:
                out.append(item[0])
                item[2] = True
            used = min(item[1], chars)
            item[1] -= used
            chars -= used
            if item[1] > 0:
                break
            self._queue.pop(0)
        return out
