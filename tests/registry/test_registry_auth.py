"""Registry authentication: htpasswd (basic) against a real registry, Bearer tokens against a
mock transport, and the pure helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.registry import RunningRegistry, htpasswd_line, registry_binary, running_registry
from modelkit.errors import RegistryError
from modelkit.names import ModelName
from modelkit.registry import RegistryClient, base_url, docker_credentials, parse_challenge, push
from modelkit.registry.client import summarize_error_body
from modelkit.store import Store


@pytest.fixture
def docker_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return home


def _write_docker_config(home: Path, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (home / ".docker").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (apt-get install -y docker-registry)")
    line = htpasswd_line("alice", "s3cret")
    if line is None:
        pytest.skip("no bcrypt: install python bcrypt or apache2-utils (htpasswd)")
    with running_registry(tmp_path / "auth-registry", htpasswd=line) as running:
        yield running


def test_push_with_docker_credentials(
    auth_registry: RunningRegistry, source_store: Store, empty_store: Store, docker_home: Path
) -> None:
    from modelkit.registry import pull

    name = auth_registry.name("team/tiny:latest")
    source_store.copy(ModelName.parse("tiny"), ModelName.parse(name))

    with pytest.raises(RegistryError, match="unauthorized") as info:
        push(source_store, name)
    assert info.value.status == 401
    assert f"no credentials for {auth_registry.host} in ~/.docker/config.json" in str(info.value)

    _write_docker_config(docker_home, auth_registry.host, "alice", "wrong")
    with pytest.raises(RegistryError, match="were refused") as info:
        push(source_store, name)
    assert info.value.status == 401

    _write_docker_config(docker_home, auth_registry.host, "alice", "s3cret")
    outcome = push(source_store, name)
    assert set(outcome.values()) == {"uploaded"}
    assert pull(empty_store, name).raw == source_store.read_manifest(ModelName.parse(name)).raw


def test_bearer_token_flow(docker_home: Path) -> None:
    _write_docker_config(docker_home, "reg.example", "bob", "pw")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "tok123"})
        if request.headers.get("Authorization") != "Bearer tok123":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://reg.example/token",'
                    'service="reg.example",scope="repository:ns/m:pull repository:ns/m:push"'
                },
                json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            )
        return httpx.Response(200, content=b'{"schemaVersion":2}')

    name = ModelName.parse("reg.example/ns/m:latest")
    with RegistryClient.for_name(name, transport=httpx.MockTransport(handler)) as client:
        raw, _ = client.get_manifest("ns/m", "latest")
    assert raw == b'{"schemaVersion":2}'
    assert [r.url.path for r in seen] == [
        "/v2/ns/m/manifests/latest",
        "/token",
        "/v2/ns/m/manifests/latest",
    ]
    token_request = seen[1]
    assert token_request.url.params.get_list("scope") == [
        "repository:ns/m:pull",
        "repository:ns/m:push",
    ]
    assert token_request.url.params["service"] == "reg.example"
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
    assert "application/vnd.docker.distribution.manifest.v2+json" in seen[0].headers["Accept"]


def test_bearer_token_refused(docker_home: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "nope"}]})
        return httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer realm="https://r.io/token"'}
        )

    name = ModelName.parse("r.io/ns/m")
    with (
        RegistryClient.for_name(name, transport=httpx.MockTransport(handler)) as client,
        pytest.raises(
            RegistryError, match=r"token request: GET https://r.io/token answered 403: DENIED: nope"
        ),
    ):
        client.get_manifest("ns/m", "latest")


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://a/token",service="a b",scope="repository:x/y:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://a/token",
        "service": "a b",
        "scope": "repository:x/y:pull,push",
    }
    assert parse_challenge('Basic realm="r"').scheme == "basic"


def test_base_url_rules() -> None:
    assert base_url(ModelName.parse("registry.example/ns/m")) == "https://registry.example"
    assert base_url(ModelName.parse("127.0.0.1:5000/ns/m")) == "http://127.0.0.1:5000"
    assert base_url(ModelName.parse("localhost:5000/ns/m")) == "http://localhost:5000"
    assert base_url(ModelName.parse("reg.lan/ns/m"), insecure=True) == "http://reg.lan"
    with pytest.raises(RegistryError, match="insecure protocol http"):
        base_url(ModelName.parse("http://reg.lan/ns/m"))
    assert base_url(ModelName.parse("http://reg.lan/ns/m"), insecure=True) == "http://reg.lan"


def test_docker_credentials(docker_home: Path) -> None:
    assert docker_credentials("h:1") is None
    _write_docker_config(docker_home, "https://h:1", "u", "p:w")
    assert docker_credentials("h:1") == ("u", "p:w")
    assert docker_credentials("other") is None


def test_summarize_error_body() -> None:
    body = (
        b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown","detail":"x"},{"code":"X"}]}'
    )
    assert summarize_error_body(body) == "BLOB_UNKNOWN: blob unknown; X"
    assert summarize_error_body(b"plain text") == "plain text"
    assert summarize_error_body(b"y" * 500).endswith("…")


def test_relative_upload_location_and_query_merge(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/ns/m/blobs/uploads/u1?_state=a"})
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": "/v2/ns/m/blobs/uploads/u1?_state=b"})
        return httpx.Response(201)

    blob = tmp_path / "blob"
    blob.write_bytes(b"0123456789")
    name = ModelName.parse("reg.example/ns/m")
    with RegistryClient.for_name(name, transport=httpx.MockTransport(handler)) as client:
        location = client.start_upload("ns/m")
        assert location == "https://reg.example/v2/ns/m/blobs/uploads/u1?_state=a"
        with open(blob, "rb") as f:
            location = client.upload_part(location, f.fileno(), 0, 10)
        client.finish_upload(location, "sha256:" + "a" * 64)
    patch, put = seen[1], seen[2]
    assert patch.headers["Content-Range"] == "0-9" and patch.content == b"0123456789"
    assert put.url.params["_state"] == "b" and put.url.params["digest"] == "sha256:" + "a" * 64
