"""A 30-second soak (benchmarks/soak.py) against the real server: 16 clients mixing streamed
and whole generate/chat, embeddings, clients that leave mid-stream, bad bodies, unknown
models and bursts past the queue. Only intended statuses come back, and the server's and the
runner's open files and threads do not grow (``python benchmarks/soak.py`` runs it longer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.scripts import load_script
from fixtures.server import RunningServer, running_server
from modelkit.store import Store


@pytest.fixture
def busy_server(tiny_store: Store, tmp_path: Path) -> Iterator[RunningServer]:
    env = {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_QUEUE": "8", "OLLAMA_KEEP_ALIVE": "-1"}
    with running_server(tiny_store.root, tmp_path, env=env) as running:
        yield running


def test_thirty_seconds_of_mixed_clients(busy_server: RunningServer) -> None:
    soak = load_script("benchmarks/soak.py", "modelkit_soak")
    report = soak.soak(busy_server.url, busy_server.process.pid, "tiny", 16, 30.0)
    print(report.table())
    assert report.unexpected == {}, report.table()
    served = sum(report.statuses.values())
    assert served > 100 and report.statuses[200] > 50
    assert {"stream", "leave", "embed", "bad_json", "unknown"} <= set(report.kinds)
    assert report.statuses[400] > 0 and report.statuses[404] > 0
    assert set(report.before) == set(report.after)  # the runner lived through it
    assert any(name.startswith("runner") for name in report.before)
    for name, before in report.before.items():
        after = report.after[name]
        assert after.fds <= before.fds + 4, (name, before, after)
        assert after.threads <= before.threads + 2, (name, before, after)
