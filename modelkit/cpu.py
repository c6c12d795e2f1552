"""Which llama.cpp CPU kernels a model is loaded with: the CPU features llama.cpp reports,
and the guard that keeps its AMX kernels off unless asked for (``MODELKIT_AMX=1``).

llama.cpp built with AMX (``-march=native`` on Intel Sapphire Rapids and later, most current
cloud x86 machines) places weights in an AMX buffer type whose matrix kernels segfault on many
of those machines (llama.cpp#20824, ollama#17249). Whether AMX is compiled in shows in
``llama_print_system_info()`` as ``AMX_INT8 = 1``. llama.cpp's API cannot drop the AMX buffer
type alone: ``use_extra_bufts = false`` drops every extra buffer type, CPU_REPACK's
re-packed kernels included, so ``examples/setup-env.sh`` builds llama.cpp without AMX in the
first place (then nothing is lost) and this guard covers binaries built otherwise.

``python -m modelkit.runtime.cpu`` prints the one-line summary (``.ci/run`` shows it).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelkit.config import env_bool

__all__ = [
    "AMX_SETTING",
    "CpuKernels",
    "apply_kernels",
    "choose_kernels",
    "cpu_features",
    "guarded_llama",
    "system_info",
]

log = logging.getLogger(__name__)

AMX_SETTING = "MODELKIT_AMX"
"""The environment variable that lets llama.cpp use its AMX kernels where they are built in."""

_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*) = 1\b")


def cpu_features(system_info: str) -> tuple[str, ...]:
    """The features llama.cpp's CPU backend reports as on (``AVX2 = 1 | ... ``), in order.

    Only the ``CPU :`` section counts: other backends list their own options.
    """
    cpu = system_info
    match = re.search(r"\bCPU : (.*?)(?:\|\s*[A-Za-z_]+ : |$)", system_info, re.S)
    if match:
        cpu = match.group(1)
    return tuple(dict.fromkeys(_FEATURE.findall(cpu)))


@dataclass(frozen=True)
class CpuKernels:
    """How llama.cpp's CPU backend is used for one load.

    ``extra_buffer_types`` is ``llama_model_params.use_extra_bufts``: llama.cpp's AMX and
    CPU_REPACK weight layouts; off means its plain ggml CPU kernels (the safe choice).
    """

    features: tuple[str, ...]
    amx_built: bool
    extra_buffer_types: bool
    reason: str

    @property
    def name(self) -> str:
        """A short label for ``ps``: which weight layouts the kernels use."""
        parts = ["cpu"]
        if self.extra_buffer_types:
            parts += ["amx"] if self.amx_built else []
            parts += ["repack"] if "REPACK" in self.features else []
        return "+".join(parts)

    def summary(self) -> str:
        features = " ".join(self.features) or "none reported"
        return f"llama.cpp CPU features: {features}; kernels: {self.name} ({self.reason})"


def choose_kernels(system_info: str, *, allow_amx: bool, safe: bool = False) -> CpuKernels:
    """The kernels to load with, given llama.cpp's system info text.

    ``allow_amx`` is the user's ``MODELKIT_AMX=1``; ``safe`` asks for the plain CPU kernels
    whatever the CPU (a model that crashed with the others).
    """
    features = cpu_features(system_info)
    amx = "AMX_INT8" in features
    if safe:
        return CpuKernels(features, amx, False, "safe kernels asked for")
    if amx and not allow_amx:
        return CpuKernels(
            features,
            amx,
            False,
            "AMX is built in and crashes on many CPUs (llama.cpp#20824): extra buffer types "
            f"off; {AMX_SETTING}=1 turns them on",
        )
    if amx:
        return CpuKernels(features, amx, True, f"AMX on ({AMX_SETTING}=1)")
    return CpuKernels(features, amx, True, "no AMX built in")


def system_info(llama_cpp: Any) -> str:
    """``llama_print_system_info()`` as text (the caller has imported llama_cpp)."""
    raw: bytes = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", errors="replace")


_logged: set[CpuKernels] = set()


def apply_kernels(
    llama_cpp: Any, model_params: Any, *, allow_amx: bool, safe: bool = False
) -> CpuKernels:
    """Set ``model_params.use_extra_bufts`` as :func:`choose_kernels` decides; the choice is
    logged the first time it is made (at INFO, or WARNING when AMX was turned off)."""
    kernels = choose_kernels(system_info(llama_cpp), allow_amx=allow_amx, safe=safe)
    model_params.use_extra_bufts = kernels.extra_buffer_types
    if kernels not in _logged:
        _logged.add(kernels)
        level = (
            logging.WARNING
            if kernels.amx_built and not kernels.extra_buffer_types
            else logging.INFO
        )
        log.log(level, "loading models with %s", kernels.summary())
    return kernels


_patch_lock = threading.Lock()


def guarded_llama(model_path: str, **kwargs: Any) -> Any:
    """llama-cpp-python's high-level ``Llama(model_path, **kwargs)``, loaded with the kernels
    :func:`choose_kernels` picks (``MODELKIT_AMX`` honoured), for code that uses it directly
    (benchmark baselines, test fixtures). ``Llama`` has no parameter for this, so its call of
    ``llama_model_default_params`` is wrapped while it loads."""
    import llama_cpp

    lib: Any = importlib.import_module("llama_cpp.llama_cpp")  # what Llama calls through
    with _patch_lock:
        original = lib.llama_model_default_params

        def default_params() -> Any:
            params = original()
            apply_kernels(llama_cpp, params, allow_amx=amx_allowed())
            return params

        lib.llama_model_default_params = default_params
        try:
            return llama_cpp.Llama(model_path=model_path, **kwargs)
        finally:
            lib.llama_model_default_params = original


def amx_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for AMX (``MODELKIT_AMX=1``): the one reading of the
    setting, for the runtime's settings and for callers without them (the registry's check,
    test fixtures)."""
    return env_bool(os.environ if environ is None else environ, AMX_SETTING)


def main() -> int:
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp CPU features: llama-cpp-python is not installed")
        return 1
    kernels = choose_kernels(system_info(llama_cpp), allow_amx=amx_allowed())
    print(kernels.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
