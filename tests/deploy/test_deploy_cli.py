"""``modelkit deploy``: what it writes and prints, and its errors (messages, not tracebacks).
Also Compose's own schema check, ``docker-compose config -q``, when the tool is installed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from deploy_helpers import PINNED, make_spec

from modelkit.cli.main import cli
from modelkit.deploy import generate, write_documents
from modelkit.store import Store


@pytest.fixture
def store(build_tiny: Callable[..., Store], monkeypatch: pytest.MonkeyPatch) -> Store:
    built = build_tiny()
    monkeypatch.setenv("OLLAMA_MODELS", str(built.root))
    return built


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["deploy", *args], catch_exceptions=False)


def _kinds(directory: Path) -> dict[str, str]:
    return {
        p.name: yaml.safe_load(p.read_text()).get("kind", "compose")
        for p in sorted(directory.glob("*.yaml"))
    }


def test_kubernetes(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = run(
        "kubernetes",
        "tiny",
        "--image",
        "reg.example/tiny:1",
        "--image-digest",
        PINNED,
        "-o",
        str(out),
        "--replicas",
        "2",
        "--parallel",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert _kinds(out) == {
        "deployment.yaml": "Deployment",
        "horizontalpodautoscaler.yaml": "HorizontalPodAutoscaler",
        "poddisruptionbudget.yaml": "PodDisruptionBudget",
        "service.yaml": "Service",
    }
    assert f"wrote {out / 'deployment.yaml'} (Deployment)" in result.output
    assert f"kubectl apply -f {out}" in result.output
    assert "prometheus-adapter" in result.output
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example/tiny:1@" + PINNED
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELKIT_PRELOAD"] == "tiny:latest"
    assert env["OLLAMA_NUM_PARALLEL"] == "2"

    # Switching the autoscaler removes the file of the old one.
    result = run(
        "kubernetes", "tiny", "--image", "reg.example/tiny:1", "-o", str(out), "--autoscale", "keda"
    )
    assert result.exit_code == 0, result.output
    assert "horizontalpodautoscaler.yaml" not in _kinds(out)
    assert _kinds(out)["scaledobject.yaml"] == "ScaledObject"
    assert "referenced by tag" in result.output  # the note on an unpinned image


def test_kubernetes_single_file_and_other_files_kept(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "mine.yaml").write_text("kind: ConfigMap\n")
    result = run(
        "kubernetes",
        "tiny",
        "--image",
        "r/t:1",
        "-o",
        str(out),
        "--single-file",
        "--namespace",
        "llm",
        "--autoscale",
        "none",
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all((out / "kubernetes.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "PodDisruptionBudget"]
    assert {d["metadata"]["namespace"] for d in docs} == {"llm"}
    assert (out / "mine.yaml").exists()  # not ours: left alone


def test_kserve(store: Store, tmp_path: Path) -> None:
    result = run("kserve", "tiny", "--image", "r/t:1", "-o", str(tmp_path), "--autoscale", "none")
    assert result.exit_code == 0, result.output
    assert _kinds(tmp_path) == {
        "inferenceservice.yaml": "InferenceService",
        "servingruntime.yaml": "ServingRuntime",
    }
    assert "tiny-predictor" in result.output


def test_compose(store: Store, tmp_path: Path) -> None:
    result = run("compose", "tiny", "--image", "r/t:1", "-o", str(tmp_path), "--port", "18080")
    assert result.exit_code == 0, result.output
    compose = yaml.safe_load((tmp_path / "compose.yaml").read_text())
    assert compose["services"]["tiny"]["ports"] == ["127.0.0.1:18080:11434"]
    assert f"docker compose -f {tmp_path / 'compose.yaml'} up -d" in result.output
    assert "docker-compose -f" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kubernetes", "nope", "--image", "r/t:1"], "model nope:latest is not in the store"),
        (
            [
                "kubernetes",
                "tiny",
                "--image",
                "r/t:1",
                "--model-source",
                "image-volume",
                "--model-image",
                "r/m:1",
                "--kube-version",
                "1.30",
            ],
            "needs Kubernetes 1.31 or newer",
        ),
        (
            ["kubernetes", "tiny", "--image", "r/t:1", "--model-source", "init"],
            "needs --model-image",
        ),
        (["kserve", "tiny", "--image", "r/t:1", "--num-ctx", "0"], "--num-ctx must be positive"),
        (["compose", "tiny", "--image", "not an image"], "not an image reference"),
    ],
)
def test_errors_are_messages(store: Store, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["deploy", *args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_message(store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(
        cli, ["deploy", "compose", "tiny", "--image", "r/t:1", "-o", str(blocker / "sub")]
    )
    assert result.exit_code == 1
    assert "cannot write into" in result.output


def test_help_lists_deploy() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "deploy" in result.output
    result = CliRunner().invoke(cli, ["deploy", "kubernetes", "--help"])
    for option in ("--model-source", "--autoscale", "--kube-version", "--image-digest"):
        assert option in result.output


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not installed (Debian: apt-get install docker-compose)",
)
@pytest.mark.parametrize("options", [{}, {"replicas": 3, "image_digest": PINNED}])
def test_docker_compose_config_accepts_the_file(tmp_path: Path, options: dict[str, object]) -> None:
    assert DOCKER_COMPOSE is not None
    write_documents(generate("compose", make_spec(**options)), tmp_path, single_file=None)
    proc = subprocess.run(
        [DOCKER_COMPOSE, "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # ... and reads it back as written (the healthcheck and the hardening survive).
    proc = subprocess.run(
        [DOCKER_COMPOSE, "-f", str(tmp_path / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    service = yaml.safe_load(proc.stdout)["services"]["qwen-demo"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["user"] == "65532:65532"
    assert service["healthcheck"]["test"] == ["CMD", "modelkit", "healthcheck", "--ready"]
