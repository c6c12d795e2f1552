"""Browser-facing protections, as Ollama has them: CORS from ``OLLAMA_ORIGINS`` and, on a
loopback listener, a Host-header check against DNS rebinding."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

# Browser extensions may always call a local server (Ollama allows them too).
EXTENSION_ORIGINS = ("chrome-extension://*", "moz-extension://*", "safari-web-extension://*")

ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "User-Agent",
    "Accept",
    "X-Requested-With",
    "OpenAI-Beta",
    *(
        f"x-stainless-{name}"
        for name in (
            "arch",
            "async",
            "custom-poll-interval",
            "helper-method",
            "lang",
            "os",
            "package-version",
            "poll-helper",
            "retry-count",
            "runtime",
            "runtime-version",
            "timeout",
        )
    ),
]


def origin_regex(origins: Iterable[str]) -> str:
    """One regex matching any of Ollama's origin patterns (``*`` is a wildcard)."""
    parts = [re.escape(o.strip()).replace(r"\*", ".*") for o in origins if o.strip()]
    return "^(" + "|".join(parts) + ")$" if parts else "^$"


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str) -> bool:
    """Whether a request's Host may reach a server listening on loopback."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower()
    if not host:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in ("localhost", socket.gethostname().lower()) or host.endswith(
            (".localhost", ".local", ".internal")
        )
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


class HostGuard:
    """Answers 403 to requests whose Host is not local (DNS-rebinding protection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not host_allowed(host):
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
