"""What the benchmark scripts share: importing helper scripts by path and finding the real
Qwen GGUF (assembled from installed packages; never downloaded)."""

from __future__ import annotations

import argparse
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


def add_model_arguments(parser: argparse.ArgumentParser, *, runs: int, num_predict: int) -> None:
    """``--gguf``, ``--runs``, ``--num-predict`` and ``--threads``, as the model benchmarks
    take them."""
    parser.add_argument("--gguf", type=Path, help="a GGUF model (default: the Qwen test model)")
    parser.add_argument("--runs", type=int, default=runs, help=f"timed rounds (default {runs})")
    parser.add_argument(
        "--num-predict", type=int, default=num_predict, help=f"max tokens (default {num_predict})"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")


def model_to_measure(gguf: Path | None) -> Path | None:
    """``gguf``, or the Qwen test model; None (after saying why) when there is none."""
    if gguf is not None:
        return gguf
    found, why = qwen_gguf()
    if found is None:
        print(f"no model to measure: the Qwen GGUF is not available ({why})")
    return found
