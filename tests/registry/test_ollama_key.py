"""Ollama's registry auth: the ed25519 key file and the signed token request."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelkit.errors import RegistryError
from modelkit.registry import ollama_key
from modelkit.registry.client import RegistryClient

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}'


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def verify(header: str, method: str, url: str) -> None:
    """Raise unless ``header`` is a valid Ollama signature of the request."""
    pub_b64, sig_b64 = header.split(":")
    public = serialization.load_ssh_public_key(b"ssh-ed25519 " + pub_b64.encode())
    assert isinstance(public, Ed25519PublicKey)
    empty = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
    public.verify(base64.b64decode(sig_b64), f"{method},{url},{empty}".encode())


def test_key_is_created_once_in_openssh_format(home: Path) -> None:
    key = ollama_key.load_or_create_key()
    path = home / ".ollama" / "id_ed25519"
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pub = (home / ".ollama" / "id_ed25519.pub").read_text()
    assert pub.startswith("ssh-ed25519 AAAA") and pub.endswith("\n")
    again = ollama_key.load_or_create_key()
    assert ollama_key.public_key_line(again) == ollama_key.public_key_line(key) == pub.strip()


def test_signature_and_sorted_query() -> None:
    key = ollama_key.load_or_create_key()
    url = ollama_key.signed_token_url(
        "https://registry.ollama.ai/v2/token",
        [("service", "ollama.com"), ("scope", "repository:library/x:pull")],
    )
    keys = [k for k, _ in parse_qsl(urlsplit(url).query)]
    assert keys == sorted(keys) == ["nonce", "scope", "service", "ts"]
    verify(ollama_key.authorization(key, "GET", url), "GET", url)
    with pytest.raises(Exception):  # noqa: B017 - any failure of verify is the point
        verify(ollama_key.authorization(key, "GET", url + "x"), "GET", url)


def test_client_signs_token_requests_to_ollama_registries() -> None:
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/token":
            verify(request.headers["Authorization"], "GET", str(request.url))
            seen["token_query"] = request.url.query.decode()
            return httpx.Response(200, json={"token": "T"})
        if request.headers.get("Authorization") == "Bearer T":
            return httpx.Response(
                200,
                content=MANIFEST,
                headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
            )
        challenge = (
            'Bearer realm="https://registry.ollama.ai/v2/token",service="ollama.com",'
            'scope="repository:library/x:pull"'
        )
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    client = RegistryClient("https://registry.ollama.ai", transport=httpx.MockTransport(handler))
    assert client.sign_with_ollama_key
    raw, _ = client.get_manifest("library/x", "latest")
    assert raw == MANIFEST
    assert "scope=repository%3Alibrary%2Fx%3Apull" in seen["token_query"]


def test_realm_on_another_host_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        challenge = 'Bearer realm="https://evil.example/token",service="x",scope="y"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    client = RegistryClient("https://registry.ollama.ai", transport=httpx.MockTransport(handler))
    with pytest.raises(RegistryError, match="does not match original host"):
        client.get_manifest("library/x", "latest")


def test_other_registries_do_not_sign() -> None:
    assert not RegistryClient("http://127.0.0.1:5000").sign_with_ollama_key
    assert ollama_key.is_ollama_registry("registry.ollama.ai")
    assert ollama_key.is_ollama_registry("ollama.com:443")
