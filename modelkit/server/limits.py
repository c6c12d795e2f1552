"""Requests a minute per API key (or per client address when there are no keys): beyond
``MODELKIT_MAX_REQUESTS_PER_MINUTE`` a request gets 429 with ``Retry-After``."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from modelkit.server.auth import refuse, required_scope

__all__ = ["RateLimit"]

WINDOW = 60.0


class RateLimit:
    """A sliding one-minute window of request times per caller; probes are not counted."""

    def __init__(
        self, app: ASGIApp, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or required_scope(scope["path"]) is None:
            await self.app(scope, receive, send)
            return
        wait = self._admit(_caller(scope))
        if wait > 0:
            await _too_many(send, self.per_minute, wait)
            return
        await self.app(scope, receive, send)

    def _admit(self, caller: str) -> float:
        """0 when the caller may go on (and it is counted), else the seconds to wait."""
        now = self.clock()
        times = self._seen.setdefault(caller, collections.deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return times[0] + WINDOW - now
        times.append(now)
        if len(self._seen) > 10_000:  # forget callers that went quiet
            for key in [k for k, v in self._seen.items() if not v]:
                del self._seen[key]
        return 0.0


def _caller(scope: Scope) -> str:
    key = (scope.get("state") or {}).get("api_key")
    if key:
        return f"key:{key}"
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:?"


async def _too_many(send: Send, per_minute: int, wait: float) -> None:
    seconds = math.ceil(wait)
    message = (
        f"rate limit: {per_minute} requests a minute (MODELKIT_MAX_REQUESTS_PER_MINUTE); "
        f"try again in {seconds} s"
    )
    await refuse(send, 429, message, [(b"retry-after", str(seconds).encode())])
