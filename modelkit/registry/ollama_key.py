"""Ollama's own registry auth: an ed25519 key at ``~/.ollama/id_ed25519`` (OpenSSH format,
created on first use as ``ollama serve`` does) signs each token request to the realm."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelkit.errors import RegistryError

OLLAMA_HOST_SUFFIXES = ("ollama.ai", "ollama.com")
# Ollama signs "GET,<url>,<base64 of the hex sha256 of the empty body>".
_EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def is_ollama_registry(host: str) -> bool:
    name = host.split(":", 1)[0].lower()
    return any(name == s or name.endswith("." + s) for s in OLLAMA_HOST_SUFFIXES)


def key_path() -> Path:
    return Path.home() / ".ollama" / "id_ed25519"


def load_or_create_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The private key, written (0600, with its ``.pub`` beside it) when it does not exist."""
    path = path or key_path()
    if path.exists():
        try:
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        except (ValueError, OSError) as err:
            raise RegistryError(f"cannot read the Ollama key {path}: {err}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise RegistryError(f"{path} is not an ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    Path(f"{path}.pub").write_text(public_key_line(key) + "\n", encoding="ascii")
    return key


def public_key_line(key: Ed25519PrivateKey) -> str:
    """``ssh-ed25519 AAAA…`` (the authorized-keys form, as in ``id_ed25519.pub``)."""
    raw = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return raw.decode("ascii")


def signed_token_url(realm: str, params: list[tuple[str, str]]) -> str:
    """The realm URL with ``params`` plus ``ts`` and ``nonce``, query sorted by key."""
    query = [
        *params,
        ("ts", str(int(time.time()))),
        ("nonce", base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")),
    ]
    query.sort(key=lambda kv: kv[0])
    parts = urlsplit(realm)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def authorization(key: Ed25519PrivateKey, method: str, url: str) -> str:
    """Ollama's ``Authorization`` value: ``<public key base64>:<signature base64>``."""
    challenge = f"{method},{url},{_EMPTY_BODY}".encode()
    signature = base64.b64encode(key.sign(challenge)).decode()
    return f"{public_key_line(key).split()[1]}:{signature}"
