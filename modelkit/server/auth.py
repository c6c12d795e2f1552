"""API keys: who may call the server, and which routes a key's scope opens (a modelkit
extension; off unless keys are configured, as Ollama has none).

Keys come from ``MODELKIT_API_KEYS`` (``key`` or ``name:key``, comma separated; admin scope)
and ``MODELKIT_API_KEYS_FILE`` (``name sha256-hex scope`` a line: the file holds no secrets).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from modelkit.errors import ApiKeyError

__all__ = [
    "SCOPES",
    "ApiKey",
    "ApiKeyGuard",
    "KeyRing",
    "add_key_line",
    "digest_of",
    "new_key",
    "refuse",
    "required_scope",
]

SCOPES: Final = ("inference", "admin")

OPEN_PATHS: Final = frozenset({"/", "/healthz", "/readyz"})
"""Routes anyone may call: liveness and readiness probes carry no key."""

_INFERENCE_PATHS: Final = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/api/show",
        "/api/tags",
        "/api/ps",
        "/api/version",
        "/metrics",
    }
)


def required_scope(path: str) -> str | None:
    """The scope a route needs: None (open), ``inference``, or ``admin`` for everything that
    changes the store (create, copy, delete, pull, push, blobs) and any route not listed."""
    if path in OPEN_PATHS:
        return None
    if path in _INFERENCE_PATHS or path.startswith("/v1/"):
        return "inference"
    return "admin"


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return "mk-" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """A key as the server knows it: its name, the SHA-256 of the key, and its scope."""

    name: str
    digest: str
    scope: str

    def allows(self, scope: str) -> bool:
        return self.scope == "admin" or self.scope == scope


class KeyRing:
    """The configured keys; :meth:`find` compares a presented key with every one of them in
    constant time."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, presented: str) -> ApiKey | None:
        digest = digest_of(presented)
        found = None
        for key in self.keys:  # no early exit: the time does not tell which key matched
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    @classmethod
    def from_settings(cls, keys: str, keys_file: Path | None) -> KeyRing:
        """Keys from ``MODELKIT_API_KEYS``' value and ``MODELKIT_API_KEYS_FILE``'s lines;
        raises :class:`ApiKeyError` for a file that is missing or malformed."""
        parsed = (_key_from_setting(i, item) for i, item in enumerate(keys.split(","), 1))
        ring = [k for k in parsed if k is not None]
        if keys_file is not None:
            ring += _read_key_file(keys_file)
        return cls(ring)


def _key_from_setting(index: int, item: str) -> ApiKey | None:
    item = item.strip()
    if not item:
        return None
    name, sep, key = item.partition(":")
    if not sep:
        name, key = f"key{index}", item
    return ApiKey(name.strip() or f"key{index}", digest_of(key.strip()), "admin")


def _read_key_file(path: Path) -> list[ApiKey]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ApiKeyError(f"cannot read the API key file {path}: {err.strerror}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 3 or len(fields[1]) != 64 or fields[2] not in SCOPES:
            raise ApiKeyError(
                f"{path}:{number}: expected 'NAME SHA256-HEX SCOPE' with SCOPE one of "
                f"{', '.join(SCOPES)}"
            )
        keys.append(ApiKey(fields[0], fields[1].lower(), fields[2]))
    return keys


def add_key_line(path: Path, name: str, scope: str) -> str:
    """Make a key, append its line to the key file at ``path`` (created 0600 if missing),
    and return the key: the only time it is seen."""
    if scope not in SCOPES:
        raise ApiKeyError(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ApiKeyError(f"a key name has no spaces or '#': {name!r}")
    if path.exists():
        taken = {k.name for k in _read_key_file(path)}
        if name in taken:
            raise ApiKeyError(f"{path} already has a key named {name}")
    key = new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(f"{name} {digest_of(key)} {scope}\n")
        out.flush()
        os.fsync(out.fileno())
    return key


class ApiKeyGuard:
    """Answers 401 to a request without a valid ``Authorization: Bearer KEY`` and 403 to one
    whose key's scope does not open the route. CORS preflights pass (they carry no key)."""

    def __init__(self, app: ASGIApp, keys: KeyRing, *, metrics_public: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.metrics_public = metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needed = required_scope(path)
        if needed is None or (path == "/metrics" and self.metrics_public):
            await self.app(scope, receive, send)
            return
        key = self.keys.find(_bearer(scope))
        if key is None:
            await refuse(send, 401, "unauthorized", [(b"www-authenticate", b"Bearer")])
        elif not key.allows(needed):
            await refuse(send, 403, "forbidden", [])
        else:
            scope.setdefault("state", {})["api_key"] = key.name
            await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


async def refuse(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    """Answer ``{"error": message}`` with ``status`` straight from ASGI middleware."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
