"""Registry authentication: Docker credentials, Basic auth and the Bearer token flow.

- Credentials come from ``~/.docker/config.json`` (``auths[<host>].auth``, base64 of
  ``user:password``); without an entry requests are anonymous.
- A ``401`` with ``WWW-Authenticate: Basic ...`` is retried with those credentials.
- A ``401`` with ``WWW-Authenticate: Bearer realm="…",service="…",scope="…"`` asks the realm for
  a token (``GET realm?service=…&scope=…``, with Basic credentials when there are some), reads
  ``{"token": …}`` or ``{"access_token": …}`` and retries with ``Authorization: Bearer …``.

Not done yet: Ollama's ed25519 request signing for ``registry.ollama.ai`` (reference §4.4).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Challenge",
    "basic_header",
    "docker_config_path",
    "docker_credentials",
    "parse_challenge",
]

_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="https://x/token",service="x",scope="repository:a/b:pull"`` → Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return Challenge(scheme.lower(), params)


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``$HOME/.docker/config.json``."""
    custom = os.environ.get("DOCKER_CONFIG")
    if custom:
        return Path(custom) / "config.json"
    home = os.environ.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _host_keys(host: str) -> list[str]:
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def docker_credentials(host: str) -> tuple[str, str] | None:
    """``(user, password)`` for ``host`` from the Docker config file, or None.

    A missing or unreadable file, or an entry without a decodable ``auth``, gives None.
    """
    try:
        data = json.loads(docker_config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {k.casefold() for k in _host_keys(host)}
    for key, entry in auths.items():
        if not isinstance(key, str) or key.casefold() not in wanted or not isinstance(entry, dict):
            continue
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                user, sep, password = base64.b64decode(encoded).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                continue
            if sep:
                return user, password
        user_field, pass_field = entry.get("username"), entry.get("password")
        if isinstance(user_field, str) and isinstance(pass_field, str):
            return user_field, pass_field
    return None


def basic_header(credentials: tuple[str, str]) -> str:
    """``Basic <base64(user:password)>``."""
    raw = f"{credentials[0]}:{credentials[1]}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
