"""Image fixtures: stores holding the tiny model built from a Modelfile, a registry; for the
Docker tests a daemon client and the runtime image (built once, reused while its inputs
hold)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from imagetest_helpers import BuildFn

from fixtures.registry import RunningRegistry, registry_binary, running_registry
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.image.runtime import (
    RuntimeContext,
    base_has_tini,
    build_image,
    checkout_root,
    image_exists,
    prepare_context,
)
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.store import Store

MODELFILE = (
    "FROM {path}\n"
    "SYSTEM You are terse.\n"
    "PARAMETER stop <|im_end|>\nPARAMETER temperature {temperature}\n"
    "LICENSE MIT\nMESSAGE user hi\n"
)


@pytest.fixture
def build_model(tmp_path: Path, tiny_gguf: Path) -> BuildFn:
    """``build(store_dir, name="tiny", temperature=0) -> Store``: the tiny GGUF built into
    a store from a Modelfile (the GGUF copied next to the store, as a user's file would be)."""

    def build(store_dir: Path | str, name: str = "tiny", temperature: float = 0) -> Store:
        root = tmp_path / store_dir
        root.mkdir(parents=True, exist_ok=True)
        # One copy per store, same file name: the manifest records it in the layer's "from".
        local = tmp_path / f"{root.name}-src" / "tiny.gguf"
        if not local.exists():
            local.parent.mkdir(parents=True)
            shutil.copy(tiny_gguf, local)
        store = Store(root)
        cache = BuildCache.for_store(store.root)
        text = MODELFILE.format(path=local, temperature=temperature)
        plan = plan_build(parse(text), store, cache)
        execute_build(plan, ModelName.parse(name), store, cache)
        return store

    return build


@pytest.fixture
def store(build_model: BuildFn) -> Store:
    """A store holding ``tiny:latest``."""
    return build_model("models")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    if registry_binary() is None:
        pytest.skip("docker-registry is not installed (apt-get install -y docker-registry)")
    with running_registry(tmp_path / "registry") as running:
        yield running


# -- a real Docker daemon and the runtime image (tests/image/test_docker_e2e.py) -------------

SETUP_HINT = "run `. examples/setup-env.sh; . examples/setup-docker.sh; modelkit_docker_setup`"
RUNTIME_REPO = "modelkit-runtime-test"


def _required() -> bool:
    """.ci/run exports MODELKIT_RUNTIME_WHEELS after setting Docker up: a missing piece is
    then a failure, not a skip."""
    return bool(os.environ.get("MODELKIT_RUNTIME_WHEELS"))


def _missing(reason: str) -> NoReturn:
    if _required():
        pytest.fail(f"{reason} (MODELKIT_RUNTIME_WHEELS is set, so the image tests must run)")
    pytest.skip(f"{reason}; {SETUP_HINT}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The ``docker`` SDK's client for the local daemon (skips when none answers)."""
    try:
        import docker
    except ImportError:
        _missing("the docker Python package is not installed (pip install -e '.[dev]')")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        _missing(f"no Docker daemon answers ({type(exc).__name__}: {exc})")
    yield client
    client.close()


def _runtime_wheels_dir() -> Path | None:
    """The folder of wheels for the runtime image: $MODELKIT_RUNTIME_WHEELS, else the newest
    complete one under ~/.cache/modelkit/runtime-wheels/."""
    explicit = os.environ.get("MODELKIT_RUNTIME_WHEELS")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    done = sorted(
        (cache / "modelkit" / "runtime-wheels").glob("*/.complete"),
        key=lambda p: p.stat().st_mtime,
    )
    return done[-1].parent if done else None


@dataclass(frozen=True)
class RuntimeImage:
    tag: str
    context: RuntimeContext
    build_seconds: float | None
    """None when an image with the same inputs was already there."""


@pytest.fixture(scope="session")
def runtime_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> RuntimeImage:
    """The runtime image, built once from host-built wheels (modelkit's from this checkout)
    on the offline base image, tagged by a hash of its inputs and reused while they hold."""
    base = os.environ.get("MODELKIT_BASE_IMAGE", "modelkit-base:bookworm")
    if not image_exists(docker_client, base):
        _missing(f"the base image {base} is not in the daemon")
    wheels = _runtime_wheels_dir()
    if wheels is None or not any(wheels.glob("llama_cpp_python-*.whl")):
        _missing("no folder of runtime wheels with a portable llama-cpp-python")
    context = prepare_context(
        tmp_path_factory.mktemp("runtime-context") / "context",
        base_image=base,
        wheels_dir=wheels,
        source=checkout_root(),
        tini=base_has_tini(docker_client, base),
    )
    tag = f"{RUNTIME_REPO}:{context.short_digest}"
    # Older test runtimes (other inputs) go; this one stays for the next run.
    for image in docker_client.images.list(name=RUNTIME_REPO):
        if tag not in image.tags:
            for old in image.tags:
                with contextlib.suppress(Exception):
                    docker_client.images.remove(old, noprune=False)
    if image_exists(docker_client, tag):
        return RuntimeImage(tag, context, None)
    started = time.monotonic()
    build_image(context, tag, client=docker_client)
    took = time.monotonic() - started
    # The install stage stays behind as an untagged image (~430 MB): not needed any more.
    with contextlib.suppress(Exception):
        docker_client.images.prune(
            filters={"dangling": True, "label": "io.modelkit.runtime-stage=install"}
        )
    return RuntimeImage(tag, context, took)


@pytest.fixture(scope="session")
def runtime_archive(
    runtime_image: RuntimeImage, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``docker-archive:FILE`` of the runtime image (saved once: assembling from it is
    quicker than from docker-daemon:, which saves the image again each time)."""
    path = tmp_path_factory.mktemp("runtime-archive") / "runtime.tar"
    with open(path, "wb") as f:
        for chunk in docker_client.images.get(runtime_image.tag).save(named=True):
            f.write(chunk)
    return f"docker-archive:{path}"


@pytest.fixture(scope="session")
def runtime_wheels_dir() -> Path | None:
    """The runtime image's wheels folder (``modelkit_runtime_wheels``), or None."""
    return _runtime_wheels_dir()


@pytest.fixture(scope="module")
def tiny_image(
    runtime_image: RuntimeImage,
    docker_client: Any,
    tiny_gguf: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The tiny model as an image in the daemon (tagged ``modelkit-e2e-tiny:<random>``), made
    in one go by ``modelkit build -f Modelfile -t tiny --image TAG --runtime
    docker-daemon:RUNTIME --load-image``; removed afterwards."""
    root = tmp_path_factory.mktemp("tiny-image")
    modelfile = root / "Modelfile"
    modelfile.write_text(MODELFILE.format(path=tiny_gguf, temperature=0))
    tag = f"modelkit-e2e-tiny:{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MODELKIT_"))}
    env["OLLAMA_MODELS"] = str(root / "models")
    cmd = [sys.executable, "-m", "modelkit", "build", "--quiet", "-f", str(modelfile), "-t", "tiny"]
    cmd += ["--image", tag, "--runtime", f"docker-daemon:{runtime_image.tag}", "--load-image"]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(f"docker.io/library/{tag} sha256:")
    print(f"\nmodelkit build --image --load-image (tiny model): {time.monotonic() - started:.1f}s")
    try:
        yield tag
    finally:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)


@pytest.fixture
def made(docker_client: Any) -> Iterator[dict[str, list[Any]]]:
    """What a test made in the daemon: ``containers`` (objects) and ``images`` (tags);
    all removed afterwards."""
    things: dict[str, list[Any]] = {"containers": [], "images": []}
    yield things
    for container in things["containers"]:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    for tag in things["images"]:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)
