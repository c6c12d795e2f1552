"""``FROM <registry name>`` in a build: local first, else pulled; ``--pull``; ``--dry-run``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fixtures.registry import RunningRegistry
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.build.sources import PullOptions, RegistryModelSource, WouldPull, default_sources
from modelkit.build.sources.base import FromRef
from modelkit.cli.main import cli
from modelkit.errors import BuildError
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.registry import push
from modelkit.store import MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_SYSTEM, Store


def _publish(store: Store, registry: RunningRegistry, src: str = "tiny") -> str:
    name = registry.name("test/tiny:latest")
    store.copy(ModelName.parse(src), ModelName.parse(name))
    push(store, name)
    return name


def _build(
    monkeypatch: pytest.MonkeyPatch, store: Store, tmp_path: Path, text: str, *args: str
) -> Result:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(text)
    monkeypatch.setenv("OLLAMA_MODELS", str(store.root))
    return CliRunner().invoke(cli, ["build", "-f", str(modelfile), "-t", "mine", *args])


def _layer(store: Store, name: str, media_type: str) -> str:
    stored = store.read_manifest(ModelName.parse(name))
    (layer,) = [d for d in stored.manifest.layers if d.media_type == media_type]
    return str(store.blob_path(layer.digest).read_text())


def _model_digest(store: Store, name: str) -> str:
    stored = store.read_manifest(ModelName.parse(name))
    (layer,) = [d for d in stored.manifest.layers if d.media_type == MEDIA_TYPE_MODEL]
    return str(layer.digest)


def test_build_pulls_a_missing_base_and_inherits_it(
    registry: RunningRegistry,
    source_store: Store,
    empty_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(source_store, registry)
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\nPARAMETER num_ctx 64\n")
    assert result.exit_code == 0, result.output
    assert "pulling manifest" in result.stderr and "success" in result.stderr
    pulled = empty_store.read_manifest(ModelName.parse(name))
    assert pulled.raw == source_store.read_manifest(ModelName.parse(name)).raw
    # layers shared: the built model re-references the pulled model layer
    assert _model_digest(empty_store, "mine") == _model_digest(empty_store, name)
    assert _layer(empty_store, "mine", MEDIA_TYPE_SYSTEM) == "You are terse."
    params = json.loads(_layer(empty_store, "mine", MEDIA_TYPE_PARAMS))
    assert params["num_ctx"] == 64 and params["temperature"] == 0
    assert params["stop"] == ["<|im_end|>"]


def test_local_base_wins_and_pull_flag_refreshes(
    registry: RunningRegistry,
    source_store: Store,
    empty_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(source_store, registry)
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n")
    assert result.exit_code == 0, result.output
    old = empty_store.read_manifest(ModelName.parse(name)).digest

    # A new version of the base in the registry (another SYSTEM).
    gguf = tmp_path / "tiny.gguf"  # written by the source_store fixture
    cache = BuildCache.for_store(source_store.root)
    plan = plan_build(parse(f"FROM {gguf}\nSYSTEM Newer.\n"), source_store, cache)
    execute_build(plan, ModelName.parse("tiny2"), source_store, cache)
    source_store.copy(ModelName.parse("tiny2"), ModelName.parse(name))
    push(source_store, name)
    new = source_store.read_manifest(ModelName.parse(name)).digest
    assert new != old

    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--quiet")
    assert result.exit_code == 0, result.output
    assert empty_store.read_manifest(ModelName.parse(name)).digest == old  # local wins
    assert _layer(empty_store, "mine", MEDIA_TYPE_SYSTEM) == "You are terse."

    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--pull", "--quiet")
    assert result.exit_code == 0, result.output
    assert empty_store.read_manifest(ModelName.parse(name)).digest == new
    assert _layer(empty_store, "mine", MEDIA_TYPE_SYSTEM) == "Newer."


def test_dry_run_says_would_pull_and_writes_nothing(
    registry: RunningRegistry,
    source_store: Store,
    empty_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _publish(source_store, registry)
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would pull {name} from {registry.host}" in result.stdout
    assert "nothing pulled" in result.stdout
    written = [p for p in empty_store.root.rglob("*") if p.is_file()]
    assert [p for p in written if "blobs" in p.parts or "manifests" in p.parts] == []

    # --dry-run --pull with the base present: no pull either, the plan is printed.
    assert _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--quiet").exit_code == 0
    before = empty_store.read_manifest(ModelName.parse(name)).digest
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--dry-run", "--pull")
    assert result.exit_code == 0, result.output
    assert "plan for mine:latest" in result.stdout and "would pull" not in result.stdout
    assert empty_store.read_manifest(ModelName.parse(name)).digest == before


def test_missing_everywhere_is_a_build_error(
    registry: RunningRegistry,
    empty_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = registry.name("test/absent:latest")
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n")
    assert result.exit_code != 0
    assert f"FROM {name}: not in the store; pull from {registry.host} failed" in result.output
    result = _build(monkeypatch, empty_store, tmp_path, f"FROM {name}\n", "--dry-run")
    assert result.exit_code != 0
    assert "not pullable" in result.output


def test_sources_without_pull_options_stay_local(empty_store: Store) -> None:
    sources = default_sources(empty_store)
    assert sources[-1].name == "store"
    with pytest.raises(BuildError, match="not found in the store"):
        sources[-1].resolve(FromRef("127.0.0.1:1/x/y:latest", None))
    source = RegistryModelSource(empty_store, PullOptions(dry_run=True))
    with pytest.raises(BuildError, match="not pullable"):
        source.resolve(FromRef("127.0.0.1:1/x/y:latest", None))
    assert issubclass(WouldPull, Exception) and not issubclass(WouldPull, BuildError)
