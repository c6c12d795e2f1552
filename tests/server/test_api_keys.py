"""API keys on a real server: no key or a wrong one is 401, an inference key cannot change the
store (403), probes stay open, and the official clients (ollama, openai, ollama-js) and
modelkit's own client commands work when they pass the key as their users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from click.testing import CliRunner
from test_ollama_js import run_js_client

from fixtures.server import RunningServer, running_server
from modelkit.cli.main import cli
from modelkit.server.auth import KeyRing, digest_of, required_scope
from modelkit.store import Store

ADMIN_KEY = "admin-secret-key"


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    """A key file with one inference key, made by ``modelkit keys add``."""
    path = tmp_path / "keys"
    result = CliRunner().invoke(cli, ["keys", "add", "ci", "--file", str(path)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    line = path.read_text().split()
    assert line == ["ci", digest_of(key), "inference"]  # the file holds no secret
    assert key not in path.read_text()
    return path, key


@pytest.fixture
def keyed(tiny_store: Store, tmp_path: Path, key_file: tuple[Path, str]) -> Iterator[RunningServer]:
    env = {"MODELKIT_API_KEYS": f"ops:{ADMIN_KEY}", "MODELKIT_API_KEYS_FILE": str(key_file[0])}
    with running_server(tiny_store.root, tmp_path, env=env) as running:
        yield running


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_missing_or_wrong_keys_are_refused(keyed: RunningServer) -> None:
    for headers in ({}, bearer("nope"), {"Authorization": ADMIN_KEY}):
        r = httpx.get(f"{keyed.url}/api/tags", headers=headers)
        assert r.status_code == 401, headers
        assert r.json() == {"error": "unauthorized"}
        assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(f"{keyed.url}/v1/chat/completions", json={})
    assert r.status_code == 401
    assert ADMIN_KEY not in keyed.log_text()


def test_probes_stay_open_and_metrics_need_a_key(keyed: RunningServer) -> None:
    assert httpx.get(keyed.url).text == "Ollama is running"
    assert httpx.get(f"{keyed.url}/healthz").status_code == 200
    assert httpx.get(f"{keyed.url}/readyz").status_code == 200
    assert httpx.get(f"{keyed.url}/metrics").status_code == 401
    assert httpx.get(f"{keyed.url}/metrics", headers=bearer(ADMIN_KEY)).status_code == 200


def test_an_inference_key_cannot_change_the_store(
    keyed: RunningServer, key_file: tuple[Path, str]
) -> None:
    key = key_file[1]
    r = httpx.post(f"{keyed.url}/api/show", json={"model": "tiny"}, headers=bearer(key))
    assert r.status_code == 200
    r = httpx.request(
        "DELETE", f"{keyed.url}/api/delete", json={"model": "tiny"}, headers=bearer(key)
    )
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    copy = {"source": "tiny", "destination": "tiny2"}
    assert httpx.post(f"{keyed.url}/api/copy", json=copy, headers=bearer(key)).status_code == 403
    r = httpx.post(f"{keyed.url}/api/copy", json=copy, headers=bearer(ADMIN_KEY))
    assert r.status_code == 200  # the admin key may


def test_official_python_clients_with_a_key(
    keyed: RunningServer, key_file: tuple[Path, str]
) -> None:
    key = key_file[1]
    client = ollama.Client(host=keyed.url, headers=bearer(key))
    assert [m.model for m in client.list().models] == ["tiny:latest"]
    answer = client.generate(model="tiny", prompt="hello", options={"num_predict": 4})
    assert answer.done and answer.eval_count == 4
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=keyed.url).list()
    assert refused.value.status_code == 401

    oa = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=key)
    chat = oa.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert chat.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong").models.list()


def test_ollama_js_with_a_key(keyed: RunningServer, key_file: tuple[Path, str]) -> None:
    out = run_js_client(keyed.url, {"MODELKIT_API_KEY": key_file[1]})
    assert out["models"] == ["tiny:latest"] and out["generate"]["eval_count"] == 4


def test_modelkit_client_commands_read_the_key(
    keyed: RunningServer, key_file: tuple[Path, str], tmp_path: Path
) -> None:
    def modelkit(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OLLAMA_HOST": keyed.url.removeprefix("http://")}
        env.pop("MODELKIT_API_KEY", None)
        if key:
            env["MODELKIT_API_KEY"] = key
        return subprocess.run(
            [sys.executable, "-m", "modelkit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    assert modelkit("ps", key=key_file[1]).returncode == 0
    refused = modelkit("ps", key=None)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    assert "Traceback" not in refused.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: tiny\ncases:\n  - name: says\n    prompt: hello\n"
        "    options: {num_predict: 3}\n    assert:\n      - max_tokens: 3\n"
    )
    ran = modelkit("test", str(spec), "--host", keyed.url, key=key_file[1])
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_serving_on_every_address_without_keys_warns(tiny_store: Store, tmp_path: Path) -> None:
    from fixtures.server import free_port

    port = free_port()
    env = {**os.environ, "OLLAMA_MODELS": str(tiny_store.root), "OLLAMA_HOST": f"0.0.0.0:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkit", "serve"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    warning = "".join(lines)
    assert "warning:" in warning and f"0.0.0.0:{port}" in warning
    assert "MODELKIT_API_KEYS" in warning


def test_scopes_and_key_files() -> None:
    assert required_scope("/healthz") is None
    assert required_scope("/api/chat") == required_scope("/v1/models") == "inference"
    assert required_scope("/api/pull") == required_scope("/api/blobs/sha256:00") == "admin"
    ring = KeyRing.from_settings("a:one, two", None)
    assert [(k.name, k.scope) for k in ring.keys] == [("a", "admin"), ("key2", "admin")]
    found = ring.find("two")
    assert found is not None and found.name == "key2"
    assert ring.find("three") is None and ring.find("") is None


def test_a_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from modelkit.errors import ModelkitError

    bad = tmp_path / "keys"
    bad.write_text("just-a-key\n")
    with pytest.raises(ModelkitError, match=r"keys:1: expected 'NAME SHA256-HEX SCOPE'"):
        KeyRing.from_settings("", bad)
    result = CliRunner().invoke(cli, ["keys", "list", "--file", str(bad)])
    assert result.exit_code == 1 and "expected 'NAME SHA256-HEX SCOPE'" in result.output
