"""CORS from OLLAMA_ORIGINS and the Host-header guard of a loopback listener."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelkit.config import Settings
from modelkit.server import create_app
from modelkit.server.security import host_allowed, origin_regex
from modelkit.store import Store


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:11434", True),
        ("localhost:11434", True),
        ("[::1]:11434", True),
        ("10.1.2.3", True),
        ("printer.local", True),
        ("app.localhost", True),
        ("evil.example.com", False),
        ("evil.example.com:11434", False),
        ("8.8.8.8", False),
    ],
)
def test_host_allowed(host: str, ok: bool) -> None:
    assert host_allowed(host) is ok


def test_origin_patterns() -> None:
    import re

    pattern = re.compile(origin_regex(["http://localhost:*", "app://*", "https://x.dev"]))
    assert pattern.match("http://localhost:3000")
    assert pattern.match("app://anything")
    assert pattern.match("https://x.dev")
    assert not pattern.match("https://x.dev.evil.com")
    assert not pattern.match("http://evil.com")


def test_cors_and_host_guard_in_the_app(tiny_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", "https://my.app")
    client = TestClient(create_app(Settings.from_env()), base_url="http://127.0.0.1:11434")
    allowed = client.get("/api/tags", headers={"Origin": "https://my.app"})
    assert allowed.headers.get("access-control-allow-origin") == "https://my.app"
    default = client.get("/api/tags", headers={"Origin": "http://localhost:5173"})
    assert default.headers.get("access-control-allow-origin") == "http://localhost:5173"
    denied = client.get("/api/tags", headers={"Origin": "https://evil.com"})
    assert "access-control-allow-origin" not in denied.headers
    preflight = client.options(
        "/api/chat",
        headers={
            "Origin": "https://my.app",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-stainless-os",
        },
    )
    assert preflight.status_code == 200
    rebound = client.get("/api/tags", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403
