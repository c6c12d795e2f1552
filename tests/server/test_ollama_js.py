"""The official JavaScript client (the ``ollama`` npm package, ollama-js) against the real
server: ``tests/server/js/client.mjs`` lists, generates and streams a chat, then prints JSON.

Needs ``node`` and ``npm install`` run in tests/server/js (``.ci/run`` does it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fixtures.server import RunningServer
from modelkit import OLLAMA_API_VERSION

JS_DIR = Path(__file__).parent / "js"


def run_js_client(url: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``client.mjs`` prints against the server at ``url`` (skips without node or the
    npm package)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "ollama" / "package.json").is_file():
        pytest.skip("the ollama npm package is missing: run `npm install` in tests/server/js")
    run = subprocess.run(
        [node, "client.mjs", url],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def test_ollama_js_client(server: RunningServer) -> None:
    out = run_js_client(server.url)
    assert out["version"] == OLLAMA_API_VERSION  # what Ollama clients gate features on
    assert out["models"] == ["tiny:latest"]
    gen = out["generate"]
    assert gen["done"] is True and gen["done_reason"] == "length" and gen["eval_count"] == 4
    assert gen["response"]
    scored = out["logprobs"]
    assert scored["response"] == gen["response"]  # greedy: logprobs change nothing
    assert "".join(scored["tokens"]) == scored["response"]
    assert scored["tops"] == [2] * 4 and scored["finite"] is True
    chat = out["chat"]
    assert chat["parts"] >= 2 and chat["roles"] == ["assistant"]
    assert chat["done"] is True and chat["done_reason"] == "length" and chat["eval_count"] == 4
    assert chat["content"]
    assert out["missing"] == {
        "name": "ResponseError",
        "status_code": 404,
        "error": "model 'missing' not found",
    }
