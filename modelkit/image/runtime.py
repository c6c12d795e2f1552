"""The runtime image: Python, modelkit and llama-cpp-python, nothing model-specific.
Owns its build context (``templates/Dockerfile.j2`` and ``dockerignore.j2`` rendered, plus a
``wheels/`` folder holding every wheel to install) and building it through a Docker daemon.

The context is self-contained: modelkit's own wheel (built from this checkout), a *portable*
llama-cpp-python wheel (never one compiled with ``-march=native``: that one dies of SIGILL on
other CPUs) and the wheels of every dependency, so the build runs with ``--network none``. The
Dockerfile installs them into a virtualenv in a first stage and copies only the virtualenv
into the final one, so no wheel ends up in the image's layers.

The image runs ``modelkit serve`` as user 65532 with ``OLLAMA_HOST=0.0.0.0:11434``,
``OLLAMA_MODELS=/models`` and ``HOME=/tmp`` (a read-only root with a tmpfs on /tmp works),
a ``HEALTHCHECK`` on ``modelkit healthcheck --ready`` and labels naming modelkit's version
and which CPU build of llama.cpp it carries (``io.modelkit.llama-cpp.build``).

- :func:`prepare_context` — write the context into a folder (``--output DIR`` stops here:
  ``docker build``, buildah or kaniko can take it from there);
- :func:`build_image` — build a context through the daemon (the ``docker`` SDK's classic
  builder), streaming the build log;
- :func:`daemon_client` — the SDK client, or :class:`ImageError` naming the address that did
  not answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

import modelkit
from modelkit.errors import ImageError
from modelkit.image.base import docker_module
from modelkit.image.model_layers import DEFAULT_MODELS_PATH
from modelkit.resources import template_text

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "LLAMA_BUILD_FILE",
    "PORTABLE_WHEELS_DIR",
    "RUNTIME_GID",
    "RUNTIME_UID",
    "RuntimeContext",
    "base_has_tini",
    "build_image",
    "checkout_root",
    "daemon_client",
    "find_portable_llama_wheel",
    "image_exists",
    "prepare_context",
    "render_dockerfile",
    "render_dockerignore",
]

DEFAULT_BASE_IMAGE = "python:3.11-slim"
RUNTIME_UID = 65532
RUNTIME_GID = 65532
PORT = 11434
VENV = "/opt/modelkit"
LLAMA_BUILD_FILE = "llama-cpp-build.txt"
"""Beside a portable llama-cpp-python wheel: one line naming its CPU build (the image's
``io.modelkit.llama-cpp.build`` label), written by ``modelkit_portable_llama_wheel``."""
PORTABLE_WHEELS_DIR = Path("modelkit") / "llama-cpp-portable-wheels"
"""Under the cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``): one folder per build key."""
UNKNOWN_BUILD = "unknown"

LogFn = Callable[[str], None]

_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-[^-]+-[^-]+\.whl$"
)
_CPYTHON_TAG_RE = re.compile(r"^cp(\d)(\d+)$")


def _quiet(_line: str) -> None:
    pass


@dataclass(frozen=True)
class RuntimeContext:
    """A rendered build context: ``path`` holds ``Dockerfile``, ``.dockerignore``, ``wheels/``."""

    path: Path
    dockerfile: str
    wheels: tuple[str, ...]
    """The wheel files' names, sorted."""
    modelkit_version: str
    llama_cpp_version: str
    llama_build: str
    """Which CPU build of llama.cpp: ``x86-64-v3``, ``cpu-variants (dynamic dispatch)``, ..."""
    inputs_digest: str
    """``sha256:<hex>`` over the wheels' contents (not their zip timestamps) and the
    Dockerfile: the same digest means the same image."""

    @property
    def short_digest(self) -> str:
        return self.inputs_digest[7:19]


# -- the wheels ------------------------------------------------------------------------------


def checkout_root() -> Path | None:
    """The source checkout modelkit runs from (the folder with its ``pyproject.toml``), or
    None for an installed copy."""
    root = Path(modelkit.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'(?m)^name\s*=\s*"modelkit"', text) else None


def find_portable_llama_wheel(cache_home: Path) -> Path | None:
    """The newest portable llama-cpp-python wheel under ``cache_home/modelkit/
    llama-cpp-portable-wheels/<key>/`` (made by ``modelkit_portable_llama_wheel``), or None."""
    found = sorted(
        (cache_home / PORTABLE_WHEELS_DIR).glob("*/llama_cpp_python-*.whl"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def _llama_build_label(wheel: Path) -> str:
    try:
        text = (wheel.parent / LLAMA_BUILD_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return UNKNOWN_BUILD
    return text.splitlines()[0].strip() if text else UNKNOWN_BUILD


def _one_wheel(folder: Path, project: str) -> Path | None:
    found = sorted(folder.glob(f"{project}-*.whl"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ImageError(f"{folder}: more than one {project} wheel ({names}); keep one")
    return found[0] if found else None


def _wheel_version(wheel: Path) -> str:
    m = _WHEEL_RE.match(wheel.name)
    return m.group("version") if m else "unknown"


def _pip(args: Sequence[str], log: LogFn, what: str) -> None:
    """Run pip quietly; its output is shown only when it fails."""
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=False,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        for line in lines[:-15]:
            log(line)
        tail = "\n".join(lines[-15:])
        raise ImageError(f"{what} failed (pip exit {proc.returncode}):\n{tail}")


def _has_build_backend() -> bool:
    """Whether this environment can build modelkit's wheel offline (no isolated build env:
    setuptools >= 70.1, or >= 68 with the wheel package)."""
    try:
        found = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    numbers = [int(x) for x in re.findall(r"\d+", found)[:2]] + [0, 0]
    major, minor = numbers[0], numbers[1]
    if (major, minor) >= (70, 1):
        return True  # bdist_wheel is part of setuptools
    return major >= 68 and importlib.util.find_spec("wheel") is not None


def build_project_wheel(source: Path, dest: Path, log: LogFn = _quiet) -> Path:
    """``pip wheel --no-deps SOURCE`` into ``dest``; the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="modelkit-wheel-") as tmp:
        args = ["wheel", "--no-deps", "-q", "-w", tmp]
        if _has_build_backend():
            args.append("--no-build-isolation")
        _pip([*args, str(source)], log, f"building modelkit's wheel from {source}")
        wheel = _one_wheel(Path(tmp), "modelkit")
        if wheel is None:
            raise ImageError(f"pip wheel {source} made no modelkit wheel")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheel, dest / wheel.name))


def _collect_wheels(
    dest: Path,
    *,
    source: Path | None,
    wheels_dir: Path | None,
    llama_wheel: Path | None,
    cache_home: Path | None,
    log: LogFn,
) -> tuple[Path, Path, str]:
    """Fill ``dest`` with modelkit's wheel, the llama-cpp-python wheel and every dependency;
    returns ``(modelkit wheel, llama wheel)`` (their paths in ``dest``) and the llama wheel's
    CPU build label."""
    dest.mkdir(parents=True, exist_ok=True)
    if source is not None:
        log(f"building modelkit's wheel from {source}")
        own = build_project_wheel(source, dest, log)
    else:
        found = _one_wheel(wheels_dir, "modelkit") if wheels_dir is not None else None
        if found is None:
            raise ImageError(
                "no modelkit wheel: run from a source checkout, or put one in --wheels DIR"
            )
        own = Path(shutil.copy2(found, dest / found.name))
    llama = llama_wheel
    if llama is None and wheels_dir is not None:
        llama = _one_wheel(wheels_dir, "llama_cpp_python")
    if llama is None and cache_home is not None:
        llama = find_portable_llama_wheel(cache_home)
    if llama is None:
        raise ImageError(
            "no portable llama-cpp-python wheel: build one with"
            " `. examples/setup-env.sh && modelkit_portable_llama_wheel DIR` and pass"
            " --wheels DIR (a wheel compiled for this CPU would crash on others)"
        )
    llama_in = Path(shutil.copy2(llama, dest / llama.name))
    # The dependencies: copied from --wheels DIR (offline), else resolved by pip (its index
    # and cache). pip wheel saves the two wheels given and every wheel they need into dest.
    args = ["wheel", "-q", "-w", str(dest), "--find-links", str(dest)]
    if wheels_dir is not None:
        args += ["--no-index", "--find-links", str(wheels_dir)]
    what = "collecting the dependencies' wheels" + (
        f" from {wheels_dir} (is a wheel missing there?)" if wheels_dir is not None else ""
    )
    log(what)
    _pip([*args, str(own), str(llama_in)], log, what)
    return own, llama_in, _llama_build_label(llama)


def _python_of(wheels: Iterable[Path]) -> tuple[int, int]:
    """The CPython version the wheels are for (a ``cpXY`` tag), else this interpreter's."""
    for wheel in wheels:
        m = _WHEEL_RE.match(wheel.name)
        if m is None:
            continue
        for tag in m.group("py").split("."):
            t = _CPYTHON_TAG_RE.match(tag)
            if t is not None:
                return int(t.group(1)), int(t.group(2))
    return sys.version_info[0], sys.version_info[1]


def _content_digest(wheel: Path) -> str:
    """A wheel's identity without its zip timestamps: its members' names and contents."""
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                h.update(info.filename.encode() + b"\0")
                digest = hashlib.sha256()
                with zf.open(info) as member:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                h.update(digest.digest())
    except (OSError, zipfile.BadZipFile) as exc:
        raise ImageError(f"{wheel}: not a readable wheel ({exc})") from None
    return h.hexdigest()


def _inputs_digest(wheels: Sequence[Path], dockerfile: str) -> str:
    h = hashlib.sha256()
    for wheel in sorted(wheels, key=lambda p: p.name):
        h.update(f"{wheel.name} {_content_digest(wheel)}\n".encode())
    h.update(dockerfile.encode())
    return "sha256:" + h.hexdigest()


# -- the templates ---------------------------------------------------------------------------


def _render(name: str, **values: Any) -> str:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    return env.from_string(template_text(name)).render(**values)


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_dockerfile(
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    requirements: Sequence[str] = ("modelkit", "llama-cpp-python"),
    version: str = modelkit.__version__,
    llama_version: str = "unknown",
    llama_build: str = UNKNOWN_BUILD,
    python: tuple[int, int] = (sys.version_info[0], sys.version_info[1]),
    tini: bool = False,
    health_interval: str = "5s",
    health_start_period: str = "60s",
) -> str:
    """The runtime image's Dockerfile (``templates/Dockerfile.j2``)."""
    if not base_image.strip() or any(c.isspace() for c in base_image):
        raise ImageError(f"invalid base image {base_image!r}")
    return _render(
        "Dockerfile.j2",
        base_image=base_image,
        requirements=list(requirements),
        version=_label_value(version),
        llama_version=_label_value(llama_version),
        llama_build=_label_value(llama_build),
        python_major=python[0],
        python_minor=python[1],
        tini=tini,
        venv=VENV,
        uid=RUNTIME_UID,
        gid=RUNTIME_GID,
        port=PORT,
        models_path=DEFAULT_MODELS_PATH,
        source=None,
        health_interval=health_interval,
        health_start_period=health_start_period,
    )


def render_dockerignore() -> str:
    """The context's ``.dockerignore`` (``templates/dockerignore.j2``)."""
    return _render("dockerignore.j2")


_CONTEXT_ENTRIES = {"Dockerfile", ".dockerignore", "wheels"}


def _prepare_folder(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ImageError(f"{out} exists and is not a folder")
        other = sorted(p.name for p in out.iterdir() if p.name not in _CONTEXT_ENTRIES)
        if other:
            raise ImageError(
                f"{out} is not empty ({', '.join(other[:3])}...): give a new or empty folder"
            )
        shutil.rmtree(out / "wheels", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def prepare_context(
    out: Path,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    wheels_dir: Path | None = None,
    source: Path | None = None,
    llama_wheel: Path | None = None,
    cache_home: Path | None = None,
    tini: bool = False,
    log: LogFn | None = None,
) -> RuntimeContext:
    """Write the runtime image's build context into ``out`` (new, empty, or a previous
    context, whose wheels are replaced).

    Wheels: modelkit's own is built from ``source`` (a checkout; without one, taken from
    ``wheels_dir``); llama-cpp-python's is ``llama_wheel``, else the one in ``wheels_dir``,
    else the newest portable one under ``cache_home``; dependencies come from ``wheels_dir``
    with no index (offline), or, without it, through pip. The llama wheel's CPU build is read
    from ``llama-cpp-build.txt`` beside it.
    """
    emit = log or _quiet
    _prepare_folder(out)
    wheels = out / "wheels"
    own, llama, build = _collect_wheels(
        wheels,
        source=source,
        wheels_dir=wheels_dir,
        llama_wheel=llama_wheel,
        cache_home=cache_home,
        log=emit,
    )
    if build == UNKNOWN_BUILD:
        emit(
            f"warning: {llama.name} has no {LLAMA_BUILD_FILE} beside it: if it was compiled"
            " for this CPU (-march=native) the image dies with SIGILL on older CPUs"
        )
    all_wheels = sorted(wheels.glob("*.whl"))
    dockerfile = render_dockerfile(
        base_image=base_image,
        version=_wheel_version(own),
        llama_version=_wheel_version(llama),
        llama_build=build,
        python=_python_of(all_wheels),
        tini=tini,
    )
    (out / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    (out / ".dockerignore").write_text(render_dockerignore(), encoding="utf-8")
    return RuntimeContext(
        path=out,
        dockerfile=dockerfile,
        wheels=tuple(p.name for p in all_wheels),
        modelkit_version=_wheel_version(own),
        llama_cpp_version=_wheel_version(llama),
        llama_build=build,
        inputs_digest=_inputs_digest(all_wheels, dockerfile),
    )


# -- the Docker daemon -----------------------------------------------------------------------


def _daemon_address() -> str:
    # The docker SDK reads DOCKER_HOST itself; this is only for saying where it looked.
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def daemon_client() -> Any:
    """A connected ``docker`` SDK client; :class:`ImageError` when no daemon answers."""
    docker = docker_module()
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, connection errors: all mean "no daemon"
        raise ImageError(
            f"no Docker daemon answers at {_daemon_address()} ({type(exc).__name__}): start"
            " one (dockerd), or write the build context with --output DIR and build it"
            " with buildah, kaniko or docker buildx"
        ) from None
    return client


TINI = "/usr/bin/tini"


def base_has_tini(client: Any, base_image: str) -> bool:
    """Whether ``base_image`` (in the daemon) has ``/usr/bin/tini``: looked up in a container
    created from it and never started (no shell needed in the image)."""
    docker = docker_module()
    try:
        container = client.containers.create(
            base_image, entrypoint=["/nonexistent"], network_disabled=True
        )
    except docker.errors.ImageNotFound:
        raise ImageError(
            f"the base image {base_image} is not in the Docker daemon (docker pull it first;"
            " builds here never pull)"
        ) from None
    except Exception as exc:  # APIError
        raise ImageError(f"cannot look into the base image {base_image}: {exc}") from None
    try:
        container.get_archive(TINI)
    except docker.errors.NotFound:
        return False
    except Exception as exc:
        raise ImageError(f"cannot look into the base image {base_image}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):  # a leftover created container is harmless
            container.remove(force=True)
    return True


def image_exists(client: Any, ref: str) -> bool:
    """Whether the daemon has an image ``ref`` (``docker image inspect``)."""
    docker = docker_module()
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


_SUCCESS_RE = re.compile(r"Successfully built ([0-9a-f]{12,64})")


def build_image(
    context: RuntimeContext | Path,
    tag: str,
    *,
    client: Any | None = None,
    log: LogFn | None = None,
    network: bool = False,
    no_cache: bool = False,
) -> str:
    """Build ``context`` through the daemon's classic builder, tagged ``tag``; returns the
    image id. The build log goes to ``log`` line by line. Without ``network`` the build runs
    with ``--network none`` (every wheel is in the context); ``no_cache`` ignores the daemon's
    layer cache."""
    emit = log or _quiet
    path = context.path if isinstance(context, RuntimeContext) else context
    api = (client if client is not None else daemon_client()).api
    image_id: str | None = None
    try:
        stream = api.build(
            path=str(path),
            tag=tag,
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=no_cache,
            network_mode=None if network else "none",
        )
        for chunk in stream:
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = detail.get("message") if isinstance(detail, dict) else None
                raise ImageError(f"docker build failed: {message or chunk['error']}".rstrip())
            text = chunk.get("stream")
            if isinstance(text, str):
                for line in text.splitlines():
                    if line.strip():
                        emit(line)
                m = _SUCCESS_RE.search(text)
                if m:
                    image_id = m.group(1)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
                image_id = aux["ID"]
    except ImageError:
        raise
    except Exception as exc:  # APIError, connection errors mid-build
        raise ImageError(f"docker build failed: {exc}") from None
    if image_id is None:
        raise ImageError("docker build ended without an image id")
    return image_id
