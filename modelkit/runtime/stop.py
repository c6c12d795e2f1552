"""Stop sequences on streamed text: cut at the first match, never let a stop string leak.

Text arrives in pieces (one per token, or whatever a decoder releases). A stop string may
span several pieces, so the tail of the text seen so far that could still turn into a stop
string is held back until the next piece settles it. The text is cut at the start of the
stop string that is complete first, whatever the pieces: generation would stop there.
Ollama's runner holds back stop prefixes the same way (``containsStopSuffix``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["StopMatcher", "apply_stops"]


class StopMatcher:
    """Feed text pieces; get back the text that is safe to emit.

    >>> m = StopMatcher(["</s>"])
    >>> m.feed("Hello </"), m.feed("s> more"), m.stopped
    ('Hello ', '', True)
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops: tuple[str, ...] = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False
        self.matched: str | None = None

    @property
    def held(self) -> str:
        """Text held back because it may be the start of a stop string."""
        return self._held

    def feed(self, piece: str) -> str:
        """Add ``piece``; return what can be emitted now ("" once stopped)."""
        if self.stopped:
            return ""
        text = self._held + piece
        if not self.stops:
            self._held = ""
            return text
        # Generation stops where the first stop string is complete (the earliest end); among
        # stops completed at the same place the one starting first is cut. This does not
        # depend on how the text is split into pieces.
        cut, end = -1, -1
        for stop in self.stops:
            at = text.find(stop)
            if at < 0:
                continue
            stop_end = at + len(stop)
            if cut < 0 or stop_end < end or (stop_end == end and at < cut):
                cut, end, self.matched = at, stop_end, stop
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        hold = self._partial_suffix(text)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """The end of the stream: release what was held back (nothing if stopped)."""
        rest, self._held = self._held, ""
        return "" if self.stopped else rest

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best


def apply_stops(pieces: Sequence[str], stops: Iterable[str]) -> tuple[list[str], bool]:
    """Run ``pieces`` through a :class:`StopMatcher`: (emitted pieces, stopped?).

    The emitted pieces joined are the text before the first stop string (or all of it).
    """
    matcher = StopMatcher(stops)
    out: list[str] = []
    for piece in pieces:
        emitted = matcher.feed(piece)
        if emitted:
            out.append(emitted)
        if matcher.stopped:
            break
    tail = matcher.flush()
    if tail:
        out.append(tail)
    return out, matcher.stopped
