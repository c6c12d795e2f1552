"""modelkit.cpu: which llama.cpp CPU kernels a model loads with (the AMX guard), decided from
llama.cpp's system-info text, so every machine runs these, AMX or not."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from modelkit import cpu
from modelkit.config import Settings
from modelkit.cpu import AMX_SETTING, choose_kernels, cpu_features
from modelkit.runtime.options import RuntimeSettings, load_params, resolve_options

# Read off real machines: a Sapphire Rapids VM (AMX built in by -march=native) and an AVX2
# laptop; the CUDA line is how another backend's section looks before the CPU's.
SAPPHIRE_RAPIDS = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 | "
)
AVX2_ONLY = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
WITH_CUDA = (
    "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
    "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AMX_INT8 = 0 | REPACK = 1 | "
)


def test_features_are_read_from_the_cpu_section() -> None:
    assert "AMX_INT8" in cpu_features(SAPPHIRE_RAPIDS)
    assert cpu_features(AVX2_ONLY)[:4] == ("SSE3", "SSSE3", "AVX", "AVX2")
    with_cuda = cpu_features(WITH_CUDA)
    assert with_cuda == ("SSE3", "AVX", "AVX2", "REPACK")  # not CUDA's, not AMX_INT8 = 0
    assert cpu_features("") == ()


def test_amx_built_in_turns_extra_buffer_types_off() -> None:
    kernels = choose_kernels(SAPPHIRE_RAPIDS, allow_amx=False)
    assert kernels.amx_built and not kernels.extra_buffer_types
    assert kernels.name == "cpu"
    assert AMX_SETTING in kernels.summary() and "AMX_INT8" in kernels.summary()


def test_amx_allowed_keeps_them() -> None:
    kernels = choose_kernels(SAPPHIRE_RAPIDS, allow_amx=True)
    assert kernels.extra_buffer_types and kernels.name == "cpu+amx+repack"


@pytest.mark.parametrize("info", [AVX2_ONLY, WITH_CUDA])
def test_no_amx_keeps_the_repack_kernels(info: str) -> None:
    kernels = choose_kernels(info, allow_amx=False)
    assert kernels.extra_buffer_types and not kernels.amx_built
    assert kernels.name == "cpu+repack"


def test_safe_kernels_whatever_the_cpu() -> None:
    for info in (AVX2_ONLY, SAPPHIRE_RAPIDS):
        kernels = choose_kernels(info, allow_amx=True, safe=True)
        assert not kernels.extra_buffer_types and kernels.name == "cpu"


def test_apply_sets_the_model_params_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    fake_llama = SimpleNamespace(llama_print_system_info=lambda: SAPPHIRE_RAPIDS.encode())
    params = SimpleNamespace(use_extra_bufts=True)
    cpu._logged.clear()
    with caplog.at_level(logging.INFO, logger="modelkit.cpu"):
        cpu.apply_kernels(fake_llama, params, allow_amx=False)
        cpu.apply_kernels(fake_llama, params, allow_amx=False)
    assert params.use_extra_bufts is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "AMX" in warnings[0].getMessage()
    cpu.apply_kernels(fake_llama, params, allow_amx=True)
    assert params.use_extra_bufts is True


def test_the_setting_reaches_load_params() -> None:
    assert Settings.from_env({}).amx is False
    assert Settings.from_env({AMX_SETTING: "1"}).amx is True
    assert cpu.amx_allowed({AMX_SETTING: "true"}) and not cpu.amx_allowed({})
    runtime = RuntimeSettings.from_env({AMX_SETTING: "1"})
    assert load_params(resolve_options(None, None, runtime), runtime).allow_amx is True
    assert load_params(resolve_options(None, None)).allow_amx is False


# -- with the real llama.cpp: the safe path, forced on any machine -----------------------------


@pytest.fixture
def as_if_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this machine's llama.cpp report AMX, whatever it was built with."""
    monkeypatch.setattr(cpu, "system_info", lambda _llama: SAPPHIRE_RAPIDS)


def test_engine_loads_with_safe_kernels_on_amx(tiny_gguf: Path, as_if_amx: None) -> None:
    pytest.importorskip("llama_cpp")
    from modelkit.runtime import LoadedModel

    settings = RuntimeSettings()
    load = load_params(resolve_options(None, {"num_thread": 1}, settings), settings)
    model = LoadedModel(tiny_gguf, load=load)
    try:
        assert model.kernels.name == "cpu" and not model.kernels.extra_buffer_types
        chunks = list(model.generate("hello", resolve_options(None, {"num_predict": 3})))
        assert chunks[-1].stats is not None and chunks[-1].stats.eval_count == 3
    finally:
        model.close()


def test_guarded_llama_loads_safe_and_restores_llama_cpp(tiny_gguf: Path, as_if_amx: None) -> None:
    llama_cpp: Any = pytest.importorskip("llama_cpp")
    import importlib

    lib = importlib.import_module("llama_cpp.llama_cpp")
    before = lib.llama_model_default_params
    llm = cpu.guarded_llama(str(tiny_gguf), n_ctx=64, n_threads=1, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
        assert lib.llama_model_default_params is before
        out = llm.create_completion("hello", max_tokens=2, temperature=0.0)
        assert out["usage"]["completion_tokens"] == 2
    finally:
        llm.close()
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True  # untouched
