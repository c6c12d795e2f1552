"""Model images in a real Docker engine: the runtime image built from host wheels with no
network, the tiny model's image assembled without a daemon, loaded, pushed, pulled, copied by
skopeo, and run — served to the official ``ollama`` client, read-only, as a non-root user,
healthy by its own HEALTHCHECK and stopped within seconds.

Needs a Docker daemon, the offline base image and the runtime wheels (``.ci/run`` sets them
up through ``examples/setup-docker.sh``); skips without them, except under ``.ci/run``. Only
127.0.0.1 is contacted; every container and model image made here is removed (the runtime
image stays, tagged by a hash of its inputs, for the next run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from imagetest_helpers import BuildFn, make_base_layout, read_layout

from fixtures.cli import run_cli
from fixtures.registry import RunningRegistry
from fixtures.server import free_port
from modelkit.image import assemble, push, write
from modelkit.image.runtime import render_dockerfile, render_dockerignore
from modelkit.store import Store

pytestmark = pytest.mark.slow

MODEL = "tiny"
HEALTHY_WITHIN = 90.0
"""Seconds from `docker run` to State.Health.Status == healthy (interval 5 s)."""
STOP_WITHIN = 5.0
"""Seconds `docker stop` may take: a graceful stop, not the 10 s SIGKILL timeout."""
OPTIONS = {"num_predict": 8, "temperature": 0, "num_thread": 1}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _uid() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Running:
    container: Any
    port: int
    healthy_after: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> ollama.Client:
        return ollama.Client(host=self.url, timeout=60)


def _logs(container: Any) -> str:
    try:
        return str(container.logs(tail=40).decode(errors="replace"))
    except Exception as exc:
        return f"(no logs: {exc})"


def wait_healthy(container: Any, started: float) -> float:
    """Seconds from ``started`` until Docker reports the container healthy."""
    while True:
        container.reload()
        state = container.attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return time.monotonic() - started
        if state.get("Status") in ("exited", "dead") or health == "unhealthy":
            probes = (state.get("Health") or {}).get("Log") or []
            pytest.fail(
                f"container {state.get('Status')}/{health}; probes: {probes[-2:]};"
                f" logs:\n{_logs(container)}"
            )
        if time.monotonic() - started > HEALTHY_WITHIN:
            pytest.fail(f"not healthy within {HEALTHY_WITHIN} s; logs:\n{_logs(container)}")
        time.sleep(0.2)


def start(
    docker_client: Any,
    image: str,
    made: dict[str, list[Any]],
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Running:
    """``docker run -d -p 127.0.0.1:PORT:11434 -e MODELKIT_PRELOAD=tiny IMAGE``, healthy
    (``env``: instead of that MODELKIT_PRELOAD)."""
    port = free_port()
    started = time.monotonic()
    container = docker_client.containers.run(
        image,
        detach=True,
        ports={"11434/tcp": ("127.0.0.1", port)},
        environment={"MODELKIT_PRELOAD": MODEL} if env is None else env,
        **kwargs,
    )
    made["containers"].append(container)
    return Running(container, port, wait_healthy(container, started))


def stop(running: Running) -> float:
    """``docker stop`` (SIGTERM, SIGKILL after 10 s): the seconds it took; the container
    must have exited by itself, with status 0."""
    started = time.monotonic()
    running.container.stop(timeout=10)
    took = time.monotonic() - started
    running.container.reload()
    code = running.container.attrs["State"]["ExitCode"]
    assert code == 0, f"exit status {code}; logs:\n{_logs(running.container)}"
    return took


def generate_ok(running: Running) -> ollama.GenerateResponse:
    out = running.client().generate(model=MODEL, prompt="hello", options=OPTIONS)
    assert out.done and (out.eval_count or 0) > 0, out
    return out


# -- the runtime image ------------------------------------------------------------------------


def test_dockerfile_template() -> None:
    """No daemon needed: what the rendered Dockerfile promises."""
    text = render_dockerfile(
        base_image="modelkit-base:bookworm", llama_build="x86-64-v3", python=(3, 11)
    )
    assert text.count("FROM modelkit-base:bookworm") == 2  # the wheels stay in stage 1
    assert "--no-index --find-links /wheels" in text and "rm -rf /wheels" in text
    assert "USER 65532:65532" in text and "EXPOSE 11434" in text
    assert 'CMD ["modelkit", "healthcheck", "--ready"]' in text
    assert 'io.modelkit.llama-cpp.build="x86-64-v3"' in text
    assert "OLLAMA_HOST=0.0.0.0:11434" in text and "HOME=/tmp" in text
    assert 'ENTRYPOINT ["modelkit"]' in text and 'CMD ["serve"]' in text
    assert "sys.version_info[:2]" in text and "(3, 11)" in text
    with_tini = render_dockerfile(tini=True)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "modelkit"]' in with_tini
    assert "FROM python:3.11-slim" in with_tini
    assert render_dockerignore().splitlines()[-3:] == ["*", "!Dockerfile", "!wheels"]


def test_runtime_image_config_and_portable_llama_cpp(
    runtime_image: Any, docker_client: Any, made: dict[str, list[Any]]
) -> None:
    image = docker_client.images.get(runtime_image.tag)
    size = image.attrs["Size"]
    built = runtime_image.build_seconds
    print(
        f"\nruntime image {runtime_image.tag}: {size / 1e6:.0f} MB,"
        f" {'reused' if built is None else f'built in {built:.1f}s'},"
        f" llama.cpp {runtime_image.context.llama_build}"
    )
    config = image.attrs["Config"]
    assert config["User"] == "65532:65532"
    assert config["Healthcheck"]["Test"] == ["CMD", "modelkit", "healthcheck", "--ready"]
    assert config["Healthcheck"]["Interval"] == 5_000_000_000
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert env["OLLAMA_MODELS"] == "/models"
    assert env["HOME"] == "/tmp"
    assert "11434/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"][-1] == "modelkit"
    assert config["Cmd"] == ["serve"]
    assert config["StopSignal"] == "SIGTERM"
    labels = config["Labels"]
    assert labels["io.modelkit.version"] == runtime_image.context.modelkit_version
    assert labels["io.modelkit.llama-cpp.build"] == runtime_image.context.llama_build
    assert labels["io.modelkit.llama-cpp.build"] != "unknown"
    assert labels["org.opencontainers.image.version"] == labels["io.modelkit.version"]
    # No wheel in the image, and its llama.cpp uses the portable kernels, not this CPU's.
    script = (
        "import os, llama_cpp; print(os.path.exists('/wheels'));"
        " print(llama_cpp.llama_print_system_info().decode())"
    )
    out = docker_client.containers.run(
        runtime_image.tag,
        entrypoint=["python", "-c", script],
        command=[],
        network_disabled=True,
        remove=True,
    ).decode()
    no_wheels, info = out.split("\n", 1)
    assert no_wheels == "False"
    assert "CPU :" in info and "AVX2 = 1" in info, info
    if runtime_image.context.llama_build == "x86-64-v3":
        assert "AVX512 = 1" not in info and "AMX" not in info, info


# -- the tiny model's image ---------------------------------------------------------------------


def test_model_image_serves_the_ollama_api(
    tiny_image: str, docker_client: Any, made: dict[str, list[Any]]
) -> None:
    # `build --image` set MODELKIT_PRELOAD to the model: the image is healthy once it loaded.
    env = docker_client.images.get(tiny_image).attrs["Config"]["Env"]
    assert "MODELKIT_PRELOAD=tiny:latest" in env
    running = start(docker_client, tiny_image, made, env={}, init=True)
    print(f"\nstart to healthy: {running.healthy_after:.1f}s")
    client = running.client()
    assert "tiny:latest" in [m.model for m in client.list().models]
    generate_ok(running)
    chat = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], options=OPTIONS)
    assert chat.message.role == "assistant" and chat.done
    embedded = client.embed(model=MODEL, input=["one", "two words"], options={"num_thread": 1})
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 0
    assert httpx.get(running.url + "/readyz", timeout=10).status_code == 200
    metrics = httpx.get(running.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "modelkit_requests_total" in metrics.text
    assert 'model="tiny' in metrics.text
    took = stop(running)
    print(f"docker stop (with --init): {took:.2f}s")
    assert took < STOP_WITHIN


def test_read_only_root_non_root_user_and_no_init(
    tiny_image: str, docker_client: Any, made: dict[str, list[Any]]
) -> None:
    # No --init: the image's own init (tini, from the base) forwards SIGTERM to modelkit.
    running = start(docker_client, tiny_image, made, read_only=True, tmpfs={"/tmp": ""})
    container = running.container
    code, out = container.exec_run(["id", "-u"])
    assert (code, out.decode().strip()) == (0, "65532")
    code, out = container.exec_run(["sh", "-c", "touch /models/x /x 2>&1; ls /models/x /x"])
    assert code != 0 and "Read-only file system" in out.decode(), out
    generate_ok(running)
    took = stop(running)
    print(f"\ndocker stop (no --init): {took:.2f}s")
    assert took < STOP_WITHIN


def test_modelkit_as_pid_1(tiny_image: str, docker_client: Any, made: dict[str, list[Any]]) -> None:
    """No init at all (the entrypoint overridden to modelkit itself, as in an image built on
    a base without tini and run without --init): SIGTERM must still stop it gracefully."""
    port = free_port()
    container = docker_client.containers.run(
        tiny_image,
        detach=True,
        entrypoint=["modelkit"],
        command=["serve"],  # a new entrypoint drops the image's CMD
        ports={"11434/tcp": ("127.0.0.1", port)},
    )
    made["containers"].append(container)
    running = Running(container, port, 0.0)
    loaded, why = False, ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not loaded and "failed" not in why:
        try:
            r = httpx.get(running.url + "/readyz", timeout=2)
            loaded, why = r.status_code == 200, r.text
        except httpx.HTTPError as exc:
            why = str(exc)
        time.sleep(0.2)
    took = stop(running)
    print(f"\ndocker stop (modelkit as PID 1): {took:.2f}s")
    assert took < STOP_WITHIN
    # A runner compares its parent with the server's pid, not with 1: under a PID-1 server
    # it loads (it once took itself for an orphan and exited).
    assert loaded, why[:300]


def test_parameter_change_push_once_and_pull_back(
    build_model: BuildFn,
    runtime_archive: str,
    registry: RunningRegistry,
    docker_client: Any,
    made: dict[str, list[Any]],
) -> None:
    store = build_model("models")
    ref_a, ref_b = registry.name("e2e/tiny:a"), registry.name("e2e/tiny:b")
    with assemble(store, MODEL, base=runtime_archive) as first:
        pushed_a = push(first, ref_a)
        weights, meta_a = (layer.digest for layer in first.model_layers)
        base_layers = [blob.digest for blob in first.layers[: -len(first.model_layers)]]
    store = build_model("models", temperature=0.5)  # only a PARAMETER changes
    started = time.monotonic()
    with assemble(store, MODEL, base=runtime_archive) as second:
        took = time.monotonic() - started
        assert second.model_layers[0].digest == weights
        meta_b = second.model_layers[1].digest
        assert meta_b != meta_a
        assert [b.digest for b in second.layers[: -len(second.model_layers)]] == base_layers
        pushed_b = push(second, ref_b)
    print(f"\nassembly after a PARAMETER change: {took:.2f}s")
    assert pushed_a[weights] == "uploaded" and pushed_b[weights] == "exists"
    assert pushed_b[meta_b] == "uploaded"
    assert all(pushed_b[d] == "exists" for d in base_layers)
    # docker pull it back (127.0.0.1 is an insecure registry by default) and run it.
    made["images"].append(ref_b)
    docker_client.images.pull(registry.name("e2e/tiny"), tag="b")
    running = start(docker_client, ref_b, made, init=True)
    shown = running.client().show(MODEL)
    assert "temperature" in (shown.parameters or "") and "0.5" in (shown.parameters or "")
    generate_ok(running)
    stop(running)


def test_oci_layout_read_and_copied_by_skopeo(
    store: Store,
    runtime_archive: str,
    tmp_path: Path,
    docker_client: Any,
    made: dict[str, list[Any]],
) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    layout = tmp_path / "layout"
    with assemble(store, MODEL, base=runtime_archive) as image:
        write(image, f"oci:{layout}:e2e")
        layers = len(image.layers)
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:e2e"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(inspect.stdout)
    assert len(info["Layers"]) == layers
    assert info["Labels"]["io.modelkit.model.name"] == "tiny:latest"
    tag = f"modelkit-e2e-skopeo:{_uid()}"
    made["images"].append(tag)
    subprocess.run(
        [skopeo, "copy", "-q", f"oci:{layout}:e2e", f"docker-daemon:{tag}"],
        capture_output=True,
        timeout=300,
        check=True,
    )
    running = start(docker_client, tag, made, init=True)
    generate_ok(running)
    stop(running)


# -- without a daemon -------------------------------------------------------------------------


def test_without_a_daemon(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtime_wheels_dir: Path | None,
) -> None:
    dead = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    monkeypatch.setenv("OLLAMA_MODELS", str(store.root))
    # The model image needs no daemon...
    base = make_base_layout(tmp_path / "base")
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        "image", MODEL, "-t", "tiny:e2e", "--runtime", base, "--output", f"oci:{out}"
    )
    assert code == 0, stderr
    read_layout(out, "e2e")
    # ...loading it into one, and building the runtime image, fail with a message.
    code, _, stderr = run_cli("image", MODEL, "-t", "tiny:e2e", "--runtime", base, "--load")
    assert code == 1 and "Docker" in stderr and "Traceback" not in stderr, stderr
    proc = subprocess.run(
        [sys.executable, "-m", "modelkit", "runtime-image", "-t", "modelkit-runtime:never"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"no Docker daemon answers at {dead}" in proc.stderr
    assert "Traceback" not in proc.stderr
    # --output writes the build context for another builder, daemon or not.
    wheels = runtime_wheels_dir
    if wheels is None or not any(wheels.glob("llama_cpp_python-*.whl")):
        return
    context = tmp_path / "context"
    code, _stdout, stderr = run_cli(
        "runtime-image", "--output", str(context), "--wheels", str(wheels)
    )
    assert code == 0, stderr
    dockerfile = (context / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["modelkit"]' in dockerfile and "USER 65532:65532" in dockerfile
    assert (context / ".dockerignore").is_file()
    names = {p.name.split("-")[0] for p in (context / "wheels").glob("*.whl")}
    assert {"modelkit", "llama_cpp_python", "numpy", "fastapi", "uvicorn"} <= names
