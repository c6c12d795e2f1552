"""Parallel pulls: several blobs at once, a large blob in parallel ranges, resumable per part."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.registry import RunningRegistry, blob_proxy
from modelkit.errors import RegistryError
from modelkit.names import ModelName
from modelkit.registry import RegistryClient, Retry, partial_path, pull, push
from modelkit.store import Descriptor, Manifest, Store
from modelkit.store.manifest import MEDIA_TYPE_CONFIG, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MODEL

BIG = 3 << 20
THRESHOLD = 256 << 10  # 3 MiB / 16 < 256 KiB, so 12 parts of 256 KiB
SMALL = 10_000  # below the proxy's 64 KiB cut size: only parts of the big blob are cut


def _publish_big(store: Store, registry: RunningRegistry) -> tuple[str, Manifest]:
    """Push a model with one ``BIG`` random blob and three small ones; returns its name."""
    big = store.write_bytes(os.urandom(BIG))
    small = [store.write_bytes(os.urandom(SMALL)) for _ in range(3)]
    config = store.write_bytes(json.dumps({"model_format": "gguf"}).encode())
    manifest = Manifest(
        config=Descriptor(MEDIA_TYPE_CONFIG, config.digest, config.size),
        layers=[
            Descriptor(MEDIA_TYPE_MODEL, big.digest, big.size),
            *(Descriptor(MEDIA_TYPE_LICENSE, b.digest, b.size) for b in small),
        ],
    )
    name = registry.name("test/big:latest")
    store.write_manifest(ModelName.parse(name), manifest)
    push(store, name)
    return "test/big:latest", manifest


def _port(registry: RunningRegistry) -> int:
    return int(registry.host.rsplit(":", 1)[1])


def _leftovers(store: Store) -> list[Path]:
    return sorted(store.blobs.directory.glob("*-partial*"))


def _span(rng: str) -> int:
    start, end = rng.removeprefix("bytes=").split("-")
    return int(end) - int(start) + 1


def _assert_identical(source: Store, pulled: Store, manifest: Manifest) -> None:
    for d in manifest.descriptors:
        assert pulled.blob_path(d.digest).read_bytes() == source.blob_path(d.digest).read_bytes()


def test_large_blob_is_pulled_in_parallel_ranges(
    registry: RunningRegistry, empty_store: Store, tmp_path: Path
) -> None:
    source = Store(tmp_path / "big-source")
    repo_tag, manifest = _publish_big(source, registry)
    big = manifest.layers[0]
    with blob_proxy(_port(registry)) as proxy:
        events: list[dict[str, Any]] = []
        pull(
            empty_store,
            f"{proxy.host}/{repo_tag}",
            progress=events.append,
            range_threshold=THRESHOLD,
        )
        ranges = proxy.range_requests()
    assert len(ranges) == BIG // THRESHOLD
    assert sorted(ranges, key=lambda r: int(r[6:].split("-")[0])) == [
        f"bytes={o}-{o + THRESHOLD - 1}" for o in range(0, BIG, THRESHOLD)
    ]
    _assert_identical(source, empty_store, manifest)
    assert _leftovers(empty_store) == []
    mine = [e for e in events if e.get("digest") == big.digest]
    assert mine[-1]["completed"] == mine[-1]["total"] == BIG
    assert all(a["completed"] <= b["completed"] for a, b in itertools.pairwise(mine))


def test_interrupted_ranged_pull_resumes_only_unfinished_parts(
    registry: RunningRegistry, empty_store: Store, tmp_path: Path
) -> None:
    source = Store(tmp_path / "big-source")
    repo_tag, manifest = _publish_big(source, registry)
    big = manifest.layers[0]
    with blob_proxy(_port(registry), mode="cut") as proxy:
        name = f"{proxy.host}/{repo_tag}"
        with pytest.raises(RegistryError, match="pull again to resume"):
            pull(empty_store, name, range_threshold=THRESHOLD, retry=Retry(attempts=1))
        first = proxy.range_requests()
        partial = partial_path(empty_store, big.digest)
        assert partial.is_file() and partial.stat().st_size == BIG  # pre-sized, sparse
        assert not empty_store.has_blob(big.digest)
        states = [json.loads(p.read_text()) for p in _leftovers(empty_store) if p != partial]
        assert len(states) == BIG // THRESHOLD
        assert {tuple(s) for s in states} == {("N", "Offset", "Size", "Completed")}
        unfinished = [s for s in states if s["Completed"] < s["Size"]]
        assert len(unfinished) == 1 and unfinished[0]["Completed"] > 0
        kept = sum(s["Completed"] for s in states)
        for d in manifest.layers[1:]:  # the other blobs finished meanwhile
            assert empty_store.has_blob(d.digest)

        events: list[dict[str, Any]] = []
        n = len(proxy.requests)
        pull(empty_store, name, progress=events.append, range_threshold=THRESHOLD)
        second = proxy.range_requests()[len(first) :]
        assert [p for m, p, _ in proxy.requests[n:] if "/blobs/" in p and m == "GET"] == [
            f"/v2/test/big/blobs/{big.digest}"
        ]
    u = unfinished[0]
    assert second == [f"bytes={u['Offset'] + u['Completed']}-{u['Offset'] + u['Size'] - 1}"]
    assert sum(_span(r) for r in second) == BIG - kept < sum(_span(r) for r in first)
    assert next(e for e in events if e.get("digest") == big.digest)["completed"] == kept
    _assert_identical(source, empty_store, manifest)
    assert _leftovers(empty_store) == []


def test_cut_part_is_retried_from_where_it_stopped(
    registry: RunningRegistry, empty_store: Store, tmp_path: Path
) -> None:
    source = Store(tmp_path / "big-source")
    repo_tag, manifest = _publish_big(source, registry)
    with blob_proxy(_port(registry), mode="cut", times=3) as proxy:
        pull(
            empty_store,
            f"{proxy.host}/{repo_tag}",
            range_threshold=THRESHOLD,
            retry=Retry(attempts=6, delay=0.001),
        )
        ranges = proxy.range_requests()
    # 12 parts, three of them cut once each and asked again only for their missing tail.
    assert len(ranges) == BIG // THRESHOLD + 3
    assert sum(_span(r) for r in ranges) < BIG + 3 * THRESHOLD
    retried = [r for r in ranges if int(r[6:].split("-")[0]) % THRESHOLD]
    assert len(retried) == 3
    _assert_identical(source, empty_store, manifest)
    assert _leftovers(empty_store) == []


def test_registry_ignoring_range_falls_back_to_one_stream(
    registry: RunningRegistry, empty_store: Store, tmp_path: Path
) -> None:
    source = Store(tmp_path / "big-source")
    repo_tag, manifest = _publish_big(source, registry)
    big = manifest.layers[0]
    asked: list[str | None] = []

    def strip_range(request: httpx.Request) -> None:
        if request.method == "GET" and big.digest in request.url.path:
            asked.append(request.headers.get("Range"))
            request.headers.pop("Range", None)  # as if the registry did not know Range

    name = registry.name(repo_tag)
    client = RegistryClient.for_name(ModelName.parse(name), event_hooks={"request": [strip_range]})
    with client:
        pull(empty_store, name, client=client, range_threshold=THRESHOLD)
    assert len([a for a in asked if a is not None]) >= 1
    assert asked[-1] is None  # the single stream from the start
    _assert_identical(source, empty_store, manifest)
    assert _leftovers(empty_store) == []


class InFlight:
    """httpx event hooks counting blob GETs between request and (slowed) response."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    @staticmethod
    def _blob_get(request: httpx.Request) -> bool:
        return request.method == "GET" and "/blobs/" in request.url.path

    def request(self, request: httpx.Request) -> None:
        if self._blob_get(request):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)

    def response(self, response: httpx.Response) -> None:
        if self._blob_get(response.request):
            time.sleep(0.2)
            with self.lock:
                self.now -= 1

    def client(self, name: str) -> RegistryClient:
        return RegistryClient.for_name(
            ModelName.parse(name),
            event_hooks={"request": [self.request], "response": [self.response]},
        )


@pytest.mark.parametrize(("max_blobs", "expected"), [(4, range(2, 5)), (1, range(1, 2))])
def test_blobs_are_fetched_concurrently(
    registry: RunningRegistry, tmp_path: Path, max_blobs: int, expected: range
) -> None:
    source = Store(tmp_path / "big-source")
    repo_tag, manifest = _publish_big(source, registry)
    pulled = Store(tmp_path / f"pulled-{max_blobs}")
    name = registry.name(repo_tag)
    hooks = InFlight()
    events: list[dict[str, Any]] = []
    with hooks.client(name) as client:
        pull(pulled, name, client=client, progress=events.append, max_blobs=max_blobs)
    assert hooks.peak in expected  # several blob GETs in flight at once, at most max_blobs
    _assert_identical(source, pulled, manifest)
    for d in manifest.descriptors:  # progress still per blob, ending complete
        last = [e for e in events if e.get("digest") == d.digest][-1]
        assert last["completed"] == last["total"] == d.size
