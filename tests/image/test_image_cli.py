"""``modelkit image`` through Click's runner: an OCI layout output and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from imagetest_helpers import digest_of, make_base_layout, read_layout

from fixtures.registry import RunningRegistry
from modelkit.cli.main import cli
from modelkit.store import Store


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def models_env(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("OLLAMA_MODELS", str(store.root))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return store


def test_image_to_an_oci_layout(models_env: Store, tmp_path: Path) -> None:
    base = make_base_layout(tmp_path / "base")
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        "image",
        "tiny",
        "-t",
        "registry.example.com/models/tiny:v1",
        "--runtime",
        base,
        "--env",
        "OLLAMA_KEEP_ALIVE=-1",
        "--label",
        "team=ml",
        "--output",
        f"oci:{out}",
    )
    assert code == 0, stderr
    manifest, config = read_layout(out, "v1")
    index = json.loads((out / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"]
    assert stdout.strip() == f"registry.example.com/models/tiny:v1 {digest}"
    assert len(manifest["layers"]) == 3
    assert "OLLAMA_KEEP_ALIVE=-1" in config["config"]["Env"]
    assert config["config"]["Labels"]["team"] == "ml"


def test_model_only_and_source_date_epoch(
    models_env: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    out = tmp_path / "out"
    code, _, stderr = _run("image", "tiny", "-t", "tiny:v2", "--model-only", "-o", f"oci:{out}")
    assert code == 0, stderr
    _, config = read_layout(out, "v2")
    assert config["created"] == "1970-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tiny", "-t", "x:v1", "--model-only", "--output", "tar:/tmp/x"], "unknown output"),
        (["nope", "-t", "x:v1", "--model-only", "-o", "oci:{tmp}"], "not found"),
        (["tiny", "-t", "x:v1", "-o", "oci:{tmp}"], "--runtime"),
        (["tiny", "-t", "Bad Name", "--model-only"], "invalid image reference"),
        (["tiny", "-t", "x:v1", "--runtime", "oci:{tmp}/none", "-o", "oci:{tmp}"], "OCI image"),
    ],
)
def test_errors_are_messages(
    models_env: Store, tmp_path: Path, args: list[str], message: str
) -> None:
    code, stdout, stderr = _run("image", *[a.format(tmp=tmp_path / "o") for a in args])
    assert code == 1
    assert message in stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in stderr + stdout


def test_bad_env_is_a_usage_error(models_env: Store) -> None:
    code, _, stderr = _run("image", "tiny", "-t", "x:v1", "--model-only", "--env", "NOEQUALS")
    assert code == 2
    assert "KEY=VALUE" in stderr


def test_push(models_env: Store, registry: RunningRegistry) -> None:
    ref = registry.name("models/tiny:v1")
    code, stdout, stderr = _run("image", "tiny", "-t", ref, "--model-only", "--push")
    assert code == 0, stderr
    digest = stdout.split()[-1]
    r = httpx.get(
        f"{registry.url}/v2/models/tiny/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 200
    assert digest_of(r.content) == digest
