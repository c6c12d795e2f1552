"""Fuzzing (benchmarks/fuzz.py, schemathesis) the real server from its own OpenAPI document,
on loopback with the tiny model: 10 generated requests per operation, valid and invalid,
within about 75 s. Every answer's status, content type and body must be documented, and none
may be a 5xx; no connection may drop, and the server's log may hold no traceback and no
crashed model runner (a stream that fails after its 200 ends with a documented ``{"error"}``
line, so only the log tells). ``python benchmarks/fuzz.py`` runs 200 an operation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from fixtures.scripts import load_script
from fixtures.server import RunningServer, running_server
from modelkit.server.openapi import BODIES
from modelkit.store import Store


def load_fuzz() -> ModuleType:
    return load_script("benchmarks/fuzz.py", "modelkit_fuzz")


@pytest.fixture
def fuzz_server(tiny_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tiny_store.root, tmp_path, env=load_fuzz().SERVER_ENV) as running:
        yield running


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_openapi_document_describes_bodies_and_answers(fuzz_server: RunningServer) -> None:
    assert httpx.get(fuzz_server.url + "/docs").status_code == 404  # no docs pages
    assert httpx.get(fuzz_server.url + "/redoc").status_code == 404
    document = httpx.get(fuzz_server.url + "/openapi.json").json()
    operations = _operations(document)
    assert set(BODIES) <= set(operations)
    schemas = document["components"]["schemas"]
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        assert "200" in responses and "422" not in responses, (method, path)
        assert "500" in responses, (method, path)
        if (method, path) in BODIES:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas
            assert {"400", "404", "413"} <= set(responses), (method, path)
        error = responses["500"]["content"]["application/json"]["schema"]["properties"]["error"]
        assert error["type"] == ("object" if path.startswith("/v1/") else "string"), path
    chat = schemas["ChatRequest"]["properties"]
    assert chat["messages"]["items"] == {"$ref": "#/components/schemas/ChatMessage"}
    assert "from" in schemas["CreateRequest"]["properties"]  # aliases, as clients send them
    generate = operations["post", "/api/generate"]["responses"]["200"]["content"]
    assert set(generate) == {"application/json", "application/x-ndjson"}
    assert (
        "text/event-stream"
        in operations["post", "/v1/chat/completions"]["responses"]["200"]["content"]
    )
    assert "503" in operations["post", "/api/chat"]["responses"]


def test_fuzzing_every_operation_finds_nothing(fuzz_server: RunningServer) -> None:
    fuzz = load_fuzz()
    report = fuzz.fuzz(fuzz_server.url, examples=10, seconds=75.0, seed=0)
    print(report.table())
    assert not report.failures, report.table()
    document = httpx.get(fuzz_server.url + "/openapi.json").json()
    fuzzed = {label.split(" ", 1)[1] for label in report.examples}
    assert fuzzed == set(document["paths"]) - set(fuzz.EXCLUDED)  # every operation ran
    assert report.total > 150
    assert report.statuses[200] > 10 and report.statuses[400] > 10  # models ran, bad bodies too
    assert fuzz_server.process.poll() is None
    log = fuzz_server.log_text()
    assert "Traceback" not in log
    assert not re.search(r"model runner for \S+ \(pid \d+\) stopped", log)  # no runner crash


def test_a_context_token_outside_the_vocabulary_is_a_400(fuzz_server: RunningServer) -> None:
    """Found by benchmarks/fuzz.py: such a token aborted the model runner (std::out_of_range
    in llama.cpp's detokenize); three of them switched the model off."""
    for context in ([-1], [10**9], [1, 2, 99999999]):
        body = {"model": "tiny", "prompt": "hi", "stream": False, "context": context}
        answer = httpx.post(fuzz_server.url + "/api/generate", json=body, timeout=60)
        assert answer.status_code == 400, answer.text
        assert "not a token of this model" in answer.json()["error"]
    ok = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    assert httpx.post(fuzz_server.url + "/api/generate", json=ok, timeout=60).status_code == 200
