"""What the benchmark scripts share: importing helper scripts by path and finding the real
Qwen GGUF (assembled from installed packages; never downloaded)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
FETCH_MODELS = REPO / "examples" / "fetch_models.py"


def load_module(name: str, path: Path) -> ModuleType:
    """A helper script (not part of a package) imported by path."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


def qwen_gguf() -> tuple[Path | None, str]:
    """(the Qwen GGUF, "") assembled from installed packages if needed, or (None, why)."""
    try:
        fetch = load_module("modelkit_examples_fetch_models", FETCH_MODELS)
        path: Path | None = fetch.qwen_path(install=False, progress=False)
    except (ImportError, OSError, RuntimeError) as exc:
        return None, str(exc)
    if path is None:
        return None, "its pip packages are not installed"
    return path, ""
