"""`modelkit deploy` output run for real on this machine's Docker: the generated compose file
brought up with Debian's docker-compose (healthy, answers through the published port, `down`
removes it), and the Kubernetes Deployment's container started with `docker run` using exactly
the pod's user, read-only root, tmpfs, environment and probe paths read back from the YAML."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
import yaml
from click.testing import CliRunner
from test_docker_e2e import MODEL, OPTIONS, Running, start, wait_healthy

from fixtures.server import free_port
from modelkit.cli.main import cli
from modelkit.store import Store


def deploy(store: Store, target: str, image: str, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["deploy", target, "tiny", "--image", image, "-o", str(out), *extra],
        env={"OLLAMA_MODELS": str(store.root)},
    )
    assert result.exit_code == 0, result.output


def test_compose_up_healthy_answers_and_down(
    store: Store, tiny_image: str, docker_client: Any, tmp_path: Path
) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    port = free_port()
    deploy(store, "compose", tiny_image, tmp_path / "compose", "--port", str(port))
    project = f"mk{uuid.uuid4().hex[:8]}"
    cmd = [compose, "-f", str(tmp_path / "compose" / "compose.yaml"), "-p", project]
    assert subprocess.run([*cmd, "config", "-q"], timeout=60, check=False).returncode == 0
    started = time.monotonic()
    up = subprocess.run([*cmd, "up", "-d"], capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        label = f"com.docker.compose.project={project}"
        containers = docker_client.containers.list(filters={"label": label})
        assert len(containers) == 1
        healthy_after = wait_healthy(containers[0], started)
        print(f"\ndocker-compose up -> healthy: {healthy_after:.1f}s")
        answer = ollama.Client(host=f"http://127.0.0.1:{port}", timeout=60).generate(
            model=MODEL, prompt="hello", options=OPTIONS
        )
        assert answer.done and (answer.eval_count or 0) > 0
        attrs = containers[0].attrs
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert attrs["Config"]["User"] == "65532:65532"
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
    finally:
        down = subprocess.run([*cmd, "down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert docker_client.containers.list(all=True, filters={"label": label}) == []


def test_the_pods_container_runs_under_docker(
    store: Store,
    tiny_image: str,
    docker_client: Any,
    made: dict[str, list[Any]],
    tmp_path: Path,
) -> None:
    deploy(store, "kubernetes", tiny_image, tmp_path / "k8s", "--autoscale", "none")
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    tmpfs = {
        m["mountPath"]: "" for m in container.get("volumeMounts", []) if m["name"] in empty_dirs
    }
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    running: Running = start(
        docker_client,
        container["image"],
        made,
        env=env,
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
        read_only=True,
        tmpfs=tmpfs,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert httpx.get(f"{running.url}{path}", timeout=10).status_code == 200, probe
    out = running.client().generate(model=MODEL, prompt="hello", options=OPTIONS)
    assert out.done and (out.eval_count or 0) > 0
