"""Ollama options: precedence, type checks, environment settings and the llama.cpp mapping."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import pytest

from modelkit.modelfile.params import PARAMETER_TYPES
from modelkit.runtime import (
    DEFAULT_NUM_CTX,
    UNSUPPORTED_OPTIONS,
    Options,
    OptionTypeError,
    RuntimeSettings,
    load_params,
    resolve_options,
    sampling_params,
)

# -- defaults and precedence -----------------------------------------------------------------


def test_defaults_are_ollamas() -> None:
    opts = resolve_options(None, None)
    assert (opts.num_keep, opts.seed, opts.num_predict, opts.top_k) == (4, -1, -1, 40)
    assert (opts.top_p, opts.min_p, opts.typical_p, opts.repeat_last_n) == (0.9, 0.0, 1.0, 64)
    assert (opts.temperature, opts.repeat_penalty) == (0.8, 1.0)
    assert (opts.presence_penalty, opts.frequency_penalty, opts.stop) == (0.0, 0.0, [])
    assert (opts.num_ctx, opts.num_batch, opts.num_gpu, opts.num_thread) == (4096, 512, -1, 0)
    assert (opts.main_gpu, opts.use_mmap, opts.draft_num_predict) == (None, None, 4)
    assert opts.explicit == set()


def test_options_fields_are_the_parameter_table() -> None:
    names = {f.name for f in dataclasses.fields(Options)} - {"explicit"}
    assert names == set(PARAMETER_TYPES)


def test_model_params_override_defaults_and_request_overrides_model() -> None:
    model = {"temperature": 0.2, "top_k": 10, "stop": ["<a>", "<b>"], "num_ctx": 1024}
    request = {"top_k": 5, "stop": ["<c>"], "seed": 7}
    opts = resolve_options(model, request)
    assert opts.temperature == 0.2  # model
    assert opts.top_k == 5  # request beats model
    assert opts.stop == ["<c>"]  # a request list replaces the model's list
    assert opts.num_ctx == 1024
    assert opts.seed == 7
    assert opts.top_p == 0.9  # default
    assert opts.explicit == {"temperature", "top_k", "stop", "num_ctx", "seed"}


def test_settings_give_the_num_ctx_default() -> None:
    settings = RuntimeSettings(context_length=8192)
    assert resolve_options(None, None, settings).num_ctx == 8192
    assert resolve_options({"num_ctx": 2048}, None, settings).num_ctx == 2048
    assert resolve_options(None, {"num_ctx": 512}, settings).num_ctx == 512
    assert RuntimeSettings().default_num_ctx == DEFAULT_NUM_CTX


def test_none_values_are_skipped() -> None:
    opts = resolve_options({"temperature": 0.1}, {"temperature": None, "use_mmap": None})
    assert opts.temperature == 0.1
    assert opts.use_mmap is None


def test_unknown_keys_are_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.runtime.options"):
        opts = resolve_options({"mirostat": 2}, {"Temperature": 0.1, "top_k": 3})
    assert opts.top_k == 3
    assert opts.temperature == 0.8
    text = caplog.text
    assert "invalid option provided" in text
    assert "mirostat" in text and "Temperature" in text


# -- JSON types ------------------------------------------------------------------------------


def test_json_numbers_into_int_fields_are_truncated() -> None:
    opts = resolve_options(None, {"num_ctx": 2048.9, "top_k": -3.7, "seed": 42})
    assert (opts.num_ctx, opts.top_k, opts.seed) == (2048, -3, 42)
    assert isinstance(opts.num_ctx, int)


def test_floats_are_float32_and_ints_accepted() -> None:
    opts = resolve_options(None, {"temperature": 0.7, "top_p": 1, "min_p": 0.1})
    assert opts.temperature == 0.7
    assert opts.top_p == 1.0 and isinstance(opts.top_p, float)
    assert opts.min_p == 0.1
    # a value that is not a float32 is rounded to one (then printed shortest)
    assert resolve_options(None, {"temperature": 0.1234567891234}).temperature == 0.12345679


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"temperature": True}, 'option "temperature" must be of type float32'),
        ({"top_k": "4"}, 'option "top_k" must be of type integer'),
        ({"top_k": True}, 'option "top_k" must be of type integer'),
        ({"num_ctx": [1]}, 'option "num_ctx" must be of type integer'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"use_mmap": "true"}, 'option "use_mmap" must be of type boolean'),
        ({"stop": "x"}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
    ],
)
def test_wrong_types_are_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionTypeError) as info:
        resolve_options(None, options)
    assert str(info.value) == message


def test_model_params_are_type_checked_too() -> None:
    with pytest.raises(OptionTypeError, match='option "seed" must be of type integer'):
        resolve_options({"seed": "1"}, None)


def test_bool_fields_take_bools() -> None:
    assert resolve_options(None, {"use_mmap": False}).use_mmap is False


# -- environment -----------------------------------------------------------------------------


def test_runtime_settings_from_env() -> None:
    env = {
        "OLLAMA_CONTEXT_LENGTH": " 8192 ",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "'Q8_0'",
        "OLLAMA_NUM_PARALLEL": "2",
    }
    s = RuntimeSettings.from_env(env)
    assert s == RuntimeSettings(
        context_length=8192, flash_attention=True, kv_cache_type="q8_0", num_parallel=2
    )
    assert RuntimeSettings.from_env({}) == RuntimeSettings()
    assert RuntimeSettings.from_env({"OLLAMA_FLASH_ATTENTION": "false"}).flash_attention is False


def test_config_settings_work_as_runtime_defaults() -> None:
    from modelkit.config import Settings

    env = {
        "OLLAMA_MODELS": "/tmp/models",
        "OLLAMA_CONTEXT_LENGTH": "8192",
        "OLLAMA_KV_CACHE_TYPE": "q8_0",
        "OLLAMA_NUM_PARALLEL": "3",
    }
    settings = Settings.from_env(env)
    opts = resolve_options(None, None, settings)
    assert opts.num_ctx == 8192
    lp = load_params(opts, settings)
    assert (lp.n_ctx, lp.flash_attn, lp.type_k, lp.n_seq_max) == (8192, 1, 8, 3)


def test_invalid_env_numbers_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.runtime.options"):
        s = RuntimeSettings.from_env({"OLLAMA_CONTEXT_LENGTH": "big", "OLLAMA_NUM_PARALLEL": "-1"})
    assert s.context_length == 0 and s.num_parallel == 1
    assert "OLLAMA_CONTEXT_LENGTH" in caplog.text


# -- mapping onto llama.cpp ------------------------------------------------------------------


def test_load_params_mapping_table() -> None:
    lp = load_params(resolve_options(None, None))
    assert lp.n_ctx == 4096
    assert lp.n_batch == 512
    assert lp.n_threads == (os.cpu_count() or 1)  # 0/auto: every core, not half
    assert lp.n_gpu_layers == 0x7FFFFFFF  # -1: all layers
    assert lp.main_gpu == 0
    assert lp.use_mmap is True
    assert (lp.flash_attn, lp.type_k, lp.type_v) == (-1, 1, 1)  # auto, f16
    assert lp.n_seq_max == 1

    opts = resolve_options(
        None,
        {
            "num_ctx": 1024,
            "num_batch": 64,
            "num_thread": 3,
            "num_gpu": 10,
            "main_gpu": 1,
            "use_mmap": False,
        },
    )
    lp = load_params(opts, RuntimeSettings(flash_attention=False, num_parallel=4))
    assert (lp.n_ctx, lp.n_batch, lp.n_threads, lp.n_gpu_layers) == (1024, 64, 3, 10)
    assert (lp.main_gpu, lp.use_mmap, lp.flash_attn, lp.n_seq_max) == (1, False, 0, 4)


def test_num_ctx_is_clamped_to_four() -> None:
    assert load_params(resolve_options(None, {"num_ctx": 1})).n_ctx == 4


def test_quantized_kv_cache_turns_flash_attention_on() -> None:
    lp = load_params(Options(), RuntimeSettings(kv_cache_type="q8_0"))
    assert (lp.flash_attn, lp.type_k, lp.type_v) == (1, 8, 8)
    lp = load_params(Options(), RuntimeSettings(kv_cache_type="q4_0", flash_attention=True))
    assert (lp.flash_attn, lp.type_k, lp.type_v) == (1, 2, 2)


def test_quantized_kv_cache_without_flash_attention_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.runtime.options"):
        lp = load_params(Options(), RuntimeSettings(kv_cache_type="q8_0", flash_attention=False))
        bad = load_params(Options(), RuntimeSettings(kv_cache_type="q2_k"))
    assert (lp.flash_attn, lp.type_k) == (0, 1)
    assert (bad.flash_attn, bad.type_k) == (-1, 1)
    assert "needs flash attention" in caplog.text
    assert "q2_k" in caplog.text


def test_sampling_params_mapping_table() -> None:
    sp = sampling_params(resolve_options(None, None))
    assert sp.seed == 0xFFFFFFFF  # -1: random
    assert (sp.temperature, sp.top_k, sp.top_p, sp.min_p, sp.typical_p) == (
        0.8,
        40,
        0.9,
        0.0,
        1.0,
    )
    assert (sp.repeat_penalty, sp.repeat_last_n) == (1.0, 64)
    assert (sp.presence_penalty, sp.frequency_penalty) == (0.0, 0.0)
    assert (sp.stop, sp.num_predict, sp.num_keep) == ((), -1, 4)

    opts = resolve_options(
        {"stop": ["", "</s>"]},
        {"seed": 42, "num_predict": -2, "repeat_last_n": -1, "temperature": 0},
    )
    sp = sampling_params(opts)
    assert (sp.seed, sp.num_predict, sp.repeat_last_n, sp.temperature) == (42, -2, -1, 0.0)
    assert sp.stop == ("</s>",)  # empty stop strings are dropped
    assert sampling_params(resolve_options(None, {"seed": -2})).seed == 2**32 - 2


def test_unsupported_options_have_logged_reasons(caplog: pytest.LogCaptureFixture) -> None:
    assert set(UNSUPPORTED_OPTIONS) == {"draft_num_predict"}
    opts = resolve_options(None, {"num_keep": 10, "draft_num_predict": 2})
    with caplog.at_level(logging.WARNING, logger="modelkit.runtime.options"):
        sampling_params(opts)
        load_params(opts)
    assert "num_keep" not in caplog.text  # used by the context shift
    assert "option draft_num_predict is not supported: speculative decoding" in caplog.text


def test_unsupported_defaults_are_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.runtime.options"):
        sampling_params(Options())
        load_params(Options())
    assert caplog.text == ""
