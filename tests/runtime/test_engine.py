"""The llama.cpp engine on the tiny random-weight model (and Qwen, marked slow)."""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.errors import InferenceError
from modelkit.modelfile import parse_file
from modelkit.names import ModelName
from modelkit.runtime import (
    Chunk,
    LoadedModel,
    LoadParams,
    Options,
    RuntimeSettings,
    load_params,
    resolve_options,
)
from modelkit.runtime.engine import built_with_openmp
from modelkit.store import Store

PROMPT = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "seed": 1}


def tiny_load(settings: RuntimeSettings | None = None, **request: Any) -> LoadParams:
    """Load parameters for the tiny model: one thread, so that a busy machine (ggml's
    threads spin at barriers) cannot slow the tests down by orders of magnitude."""
    return load_params(resolve_options(None, {"num_thread": 1, **request}, settings), settings)


def opts(**request: Any) -> Options:
    return resolve_options(None, {**GREEDY, **request})


def run(model: LoadedModel, options: Options, prompt: str = PROMPT) -> tuple[list[str], Chunk]:
    """The streamed text deltas and the final chunk (whose text is appended to the deltas)."""
    chunks = list(model.generate(prompt, options))
    assert chunks[-1].done and all(not c.done for c in chunks[:-1])
    texts = [c.text for c in chunks[:-1]] + ([chunks[-1].text] if chunks[-1].text else [])
    return texts, chunks[-1]


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Iterator[LoadedModel]:
    with LoadedModel(tiny_gguf, load=tiny_load()) as m:
        yield m


@pytest.fixture(scope="module")
def greedy(model: LoadedModel) -> tuple[list[str], Chunk]:
    """30 greedy tokens of PROMPT (no stop strings)."""
    return run(model, opts(num_predict=30))


# -- loading ---------------------------------------------------------------------------------


def test_loads_with_clamped_context_and_stats(model: LoadedModel) -> None:
    assert model.n_ctx_train == 2048
    assert model.n_ctx == 2048  # the 4096 default is clamped to the trained context
    assert model.n_embd == 64
    assert model.load_duration > 0
    assert model.adapters_loaded == 0


def test_missing_weights_are_an_inference_error(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="not found"):
        LoadedModel(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(InferenceError, match="failed to load model"):
        LoadedModel(bad)


def test_metadata(model: LoadedModel) -> None:
    assert model.metadata("general.architecture") == "llama"
    assert model.metadata("llama.context_length") == "2048"
    assert model.metadata("no.such.key") is None


def test_openmp_detection() -> None:
    assert built_with_openmp("CPU : SSE3 = 1 | OPENMP = 1 | AVX = 1 |")
    assert not built_with_openmp("CPU : SSE3 = 1 | AVX2 = 1 | LLAMAFILE = 1 |")


def test_tokenize_and_detokenize(model: LoadedModel) -> None:
    tokens = model.tokenize(PROMPT)
    assert tokens[0] == model.tokenize("<|im_start|>", add_special=False)[0]
    assert model.detokenize(tokens, special=True) == PROMPT
    # control tokens are parsed as single tokens, and hidden unless asked for
    assert len(model.tokenize("<|im_end|>", add_special=False)) == 1
    assert model.detokenize(model.tokenize("<|im_end|>hi", add_special=False)) == "hi"
    assert model.tokenize("<|im_end|>", add_special=False, parse_special=False) != (
        model.tokenize("<|im_end|>", add_special=False)
    )


# -- generation ------------------------------------------------------------------------------


def test_greedy_generation_is_deterministic(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    texts, final = greedy
    again, final2 = run(model, opts(num_predict=30))
    assert "".join(again) == "".join(texts)
    assert final2.stats is not None and final.stats is not None
    assert final2.stats.context == final.stats.context


def test_seeded_sampling_is_reproducible(model: LoadedModel) -> None:
    sampled = resolve_options(None, {"temperature": 1.5, "seed": 42, "num_predict": 20})
    a = "".join(run(model, sampled)[0])
    b = "".join(run(model, sampled)[0])
    other = "".join(
        run(model, resolve_options(None, {"temperature": 1.5, "seed": 43, "num_predict": 20}))[0]
    )
    assert a == b
    assert a != other


def test_num_predict_gives_length_and_eval_count(model: LoadedModel) -> None:
    _, final = run(model, opts(num_predict=5))
    assert final.stats is not None
    assert final.done_reason == "length"
    assert final.stats.eval_count == 5
    assert final.stats.prompt_eval_count == len(model.tokenize(PROMPT))
    assert final.stats.context[: final.stats.prompt_eval_count] == model.tokenize(PROMPT)
    assert len(final.stats.context) == final.stats.prompt_eval_count + 5


def test_repetition_penalties_change_greedy_output(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    full = "".join(greedy[0])
    penalized = "".join(run(model, opts(num_predict=30, repeat_penalty=3.0))[0])
    presence = "".join(run(model, opts(num_predict=30, presence_penalty=5.0))[0])
    assert penalized != full and presence != full
    # repeat_last_n 0 turns the penalties off (it is a per-request option here)
    off = "".join(run(model, opts(num_predict=30, repeat_penalty=3.0, repeat_last_n=0))[0])
    assert off == full


def test_timings_are_positive_nanoseconds(greedy: tuple[list[str], Chunk]) -> None:
    stats = greedy[1].stats
    assert stats is not None
    assert stats.prompt_eval_duration > 0
    assert stats.eval_duration > 0
    assert stats.load_duration > 0
    assert stats.total_duration >= stats.prompt_eval_duration + stats.eval_duration
    assert stats.eval_duration < 60 * 10**9  # ns, not something else


def test_stream_false_gives_one_chunk_with_the_same_text(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    chunks = list(model.generate(PROMPT, opts(num_predict=30), stream=False))
    assert len(chunks) == 1 and chunks[0].done
    assert chunks[0].text == "".join(greedy[0])
    assert chunks[0].done_reason == "length"


def _stop_spanning_two_chunks(texts: list[str]) -> tuple[str, int]:
    """A stop string made of the end of one streamed chunk and the start of the next."""
    for i in range(3, len(texts) - 1):
        a, b = texts[i], texts[i + 1]
        if len(a) >= 2 and len(b) >= 1:
            return a[-2:] + b[:1], i
    raise AssertionError(f"no two usable adjacent chunks in {texts!r}")


def test_stop_string_spanning_chunks_is_cut(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    texts, _ = greedy
    full = "".join(texts)
    stop, _ = _stop_spanning_two_chunks(texts)
    assert len(model.tokenize(stop, add_special=False)) >= 2  # a multi-token stop
    expected = full[: full.index(stop)]

    out, final = run(model, opts(num_predict=30, stop=[stop]))
    assert "".join(out) == expected
    assert all(stop not in "".join(out[: i + 1]) for i in range(len(out)))
    assert final.done_reason == "stop"
    assert final.stats is not None and final.stats.eval_count < 30

    chunks = list(model.generate(PROMPT, opts(num_predict=30, stop=[stop]), stream=False))
    assert chunks[0].text == expected


def test_stop_string_from_a_word_in_the_output(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    texts, _ = greedy
    full = "".join(texts)
    middle = len(full) // 2
    stop = full[middle : middle + 4]
    out, final = run(model, opts(num_predict=30, stop=["never-there", stop]))
    assert "".join(out) == full[: full.index(stop)]
    assert final.done_reason == "stop"


def test_stop_string_not_in_output_changes_nothing(
    model: LoadedModel, greedy: tuple[list[str], Chunk]
) -> None:
    out, final = run(model, opts(num_predict=30, stop=["\u2603never\u2603"]))
    assert "".join(out) == "".join(greedy[0])
    assert final.done_reason == "length"


def test_model_stop_param_is_used(tiny_gguf: Path, greedy: tuple[list[str], Chunk]) -> None:
    full = "".join(greedy[0])
    stop = full[10:13]
    with LoadedModel(
        tiny_gguf, load=tiny_load(), model_params={"stop": [stop], "temperature": 0}
    ) as m:
        out, final = run(m, m.resolve({"num_predict": 30, "seed": 1}))
    assert "".join(out) == full[: full.index(stop)]
    assert final.done_reason == "stop"


def test_full_context_ends_with_length(tiny_gguf: Path) -> None:
    load = tiny_load(num_ctx=32)
    with LoadedModel(tiny_gguf, load=load) as m:
        assert m.n_ctx == 32
        _, final = run(m, opts(num_predict=-2))
    assert final.done_reason == "length"
    assert final.stats is not None
    assert final.stats.prompt_eval_count + final.stats.eval_count == 32


def test_full_context_shifts_and_goes_on(tiny_gguf: Path) -> None:
    with LoadedModel(tiny_gguf, load=tiny_load(num_ctx=32)) as m:
        chunks = list(m.generate(PROMPT, opts(num_predict=80)))
        final = chunks[-1].stats
        assert final is not None and final.done_reason == "length"
        assert final.eval_count == 80  # far past the 32-token context
        assert len(final.context) == final.prompt_eval_count + 80
        # The same request without a shift stops where the context is full.
        off = list(m.generate(PROMPT, opts(num_predict=80), shift=False))[-1].stats
        assert off is not None and off.done_reason == "length"
        assert off.prompt_eval_count + off.eval_count == 32
        # Unlimited: ten contexts' worth at most (a random model never stops by itself).
        for unlimited in (-1, 0, -3):
            endless = list(m.generate(PROMPT, opts(num_predict=unlimited)))[-1].stats
            assert endless is not None and endless.eval_count == 10 * 32
        # The shifted slot is not reused as a prompt cache: the next request starts clean.
        after = list(m.generate(PROMPT, opts(num_predict=2)))[-1].stats
        assert after is not None and after.cached_count == 0
        again = list(m.generate(PROMPT, opts(num_predict=2)))[-1].stats
        assert again is not None and again.cached_count > 0


def test_context_shift_keeps_the_prompt_head(tiny_gguf: Path) -> None:
    """Greedy output after a shift depends on what num_keep kept; before the first shift
    (the context's first 32 positions) it is the same."""
    with LoadedModel(tiny_gguf, load=tiny_load(num_ctx=32)) as m:
        before = "".join(run(m, opts(num_predict=10))[0])
        small = "".join(run(m, opts(num_predict=60, num_keep=0))[0])
        large = "".join(run(m, opts(num_predict=60, num_keep=20))[0])
    assert small.startswith(before) and large.startswith(before)
    assert small != large


def test_long_prompt_is_truncated_or_rejected(tiny_gguf: Path) -> None:
    load = tiny_load(num_ctx=16)
    long_prompt = PROMPT + "hello world " * 20
    with LoadedModel(tiny_gguf, load=load) as m:
        tokens = m.tokenize(long_prompt)
        assert len(tokens) > 16
        _, final = run(m, opts(num_predict=2, num_keep=3), long_prompt)
        assert final.stats is not None
        assert final.stats.prompt_eval_count == 16
        assert final.stats.context[:16] == tokens[:3] + tokens[-13:]
        chunks = list(m.generate(long_prompt, opts(num_predict=2, num_keep=3)))
        assert chunks[0].truncated == len(tokens) - 16  # told once, with the first chunk
        assert all(c.truncated == 0 for c in chunks[1:])
        too_long = f"prompt is {len(tokens)} tokens, over num_ctx 16"
        with pytest.raises(InferenceError, match=too_long):
            m.generate(long_prompt, opts(num_predict=2), truncate=False)  # raised at the call


def test_empty_prompt_is_an_error(model: LoadedModel) -> None:
    if model.tokenize(""):  # the model adds BOS: an empty prompt still has a token
        pytest.skip("model adds BOS")
    with pytest.raises(InferenceError, match="empty"):
        model.generate("", opts(num_predict=2))


def test_prompt_prefix_is_reused_from_the_kv_cache(tiny_gguf: Path) -> None:
    with LoadedModel(tiny_gguf, load=tiny_load()) as m:
        n = len(m.tokenize(PROMPT))
        first, s1 = run(m, opts(num_predict=10))
        second, s2 = run(m, opts(num_predict=10))
        longer, s3 = run(m, opts(num_predict=10), PROMPT + "<|im_end|>")
        _, s4 = run(m, opts(num_predict=10), "<|im_start|>system\nx<|im_end|>\n" + PROMPT)
    assert s1.stats is not None and s2.stats is not None
    assert s3.stats is not None and s4.stats is not None
    assert s1.stats.cached_count == 0
    assert s2.stats.cached_count == n - 1  # the last prompt token is evaluated again
    assert s3.stats.cached_count == n
    assert s4.stats.cached_count == 1  # only the shared first token
    # Ollama counts the whole prompt either way
    assert (s2.stats.prompt_eval_count, s3.stats.prompt_eval_count) == (n, n + 1)
    assert second == first

    with LoadedModel(tiny_gguf, load=tiny_load(), cache_prompt=False) as m:
        uncached = [run(m, opts(num_predict=10), p) for p in (PROMPT, PROMPT + "<|im_end|>")]
    assert [u[1].stats.cached_count for u in uncached if u[1].stats] == [0, 0]
    assert "".join(uncached[0][0]) == "".join(first)
    assert "".join(uncached[1][0]) == "".join(longer)


def test_closing_a_stream_early_releases_its_slot(model: LoadedModel) -> None:
    gen = model.generate(PROMPT, opts(num_predict=30))
    next(gen)
    gen.close()
    # one slot (num_parallel 1): a second request would block forever if it leaked
    _, final = run(model, opts(num_predict=3))
    assert final.stats is not None and final.stats.eval_count == 3
    assert final.stats.cached_count == 0  # the abandoned sequence's cache was dropped


@pytest.mark.parametrize("parallel", [1, 2])
def test_concurrent_requests_from_threads(tiny_gguf: Path, parallel: int) -> None:
    settings = RuntimeSettings(num_parallel=parallel)
    load = tiny_load(settings)
    prompts = [PROMPT, "<|im_start|>user\nwhat?<|im_end|>\n<|im_start|>assistant\n"]
    with LoadedModel(tiny_gguf, load=load) as m:
        assert m.n_seq_max == parallel
        expected = ["".join(run(m, opts(num_predict=12), p)[0]) for p in prompts]
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                results[i] = "".join(run(m, opts(num_predict=12), prompts[i % 2])[0])
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    assert [results[i] for i in range(4)] == [expected[i % 2] for i in range(4)]


def test_generate_after_close_is_an_error(tiny_gguf: Path) -> None:
    m = LoadedModel(tiny_gguf, load=tiny_load())
    m.close()
    m.close()  # idempotent
    with pytest.raises(InferenceError, match="unloaded"):
        m.generate(PROMPT, opts(num_predict=2))


# -- LoRA ------------------------------------------------------------------------------------


def test_lora_adapter_loads_and_changes_the_output(
    tiny_gguf: Path, tiny_lora_gguf: Path, greedy: tuple[list[str], Chunk]
) -> None:
    with LoadedModel(tiny_gguf, load=tiny_load(), adapters=[tiny_lora_gguf]) as m:
        assert m.adapters_loaded == 1
        out, final = run(m, opts(num_predict=30))
        vec = m.embed(["hello"])[0]
    assert final.done_reason == "length"
    assert "".join(out) != "".join(greedy[0])
    assert math.isclose(sum(x * x for x in vec), 1.0, rel_tol=1e-6)


def test_missing_lora_is_an_inference_error(tiny_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="LoRA adapter not found"):
        LoadedModel(tiny_gguf, load=tiny_load(), adapters=[tmp_path / "missing.gguf"])


def test_broken_lora_is_an_inference_error_not_a_crash(tiny_gguf: Path, tmp_path: Path) -> None:
    # A file that is not a LoRA adapter: llama.cpp returns a NULL handle, which must be
    # caught at load time (using it would segfault at the first decode).
    not_a_lora = tmp_path / "not-a-lora.gguf"
    shutil.copy(tiny_gguf, not_a_lora)
    with pytest.raises(InferenceError, match="failed to load LoRA adapter"):
        LoadedModel(tiny_gguf, load=tiny_load(), adapters=[not_a_lora])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all")
    with pytest.raises(InferenceError, match="failed to load LoRA adapter"):
        LoadedModel(tiny_gguf, load=tiny_load(), adapters=[garbage])


# -- from the store --------------------------------------------------------------------------


def test_from_store_uses_weights_adapter_and_parameters(
    ollama_models: Path, tmp_path: Path, tiny_gguf: Path, tiny_lora_gguf: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(tiny_gguf, project / "tiny.gguf")
    shutil.copy(tiny_lora_gguf, project / "lora.gguf")
    modelfile = project / "Modelfile"
    modelfile.write_text(
        "FROM ./tiny.gguf\nADAPTER ./lora.gguf\n"
        "PARAMETER temperature 0\nPARAMETER num_predict 3\nPARAMETER num_ctx 256\n",
        encoding="utf-8",
    )
    store = Store(ollama_models)
    cache = BuildCache.for_store(store.root)
    plan = plan_build(parse_file(modelfile), store, cache)
    execute_build(plan, ModelName.parse("tiny-lora"), store, cache)

    with LoadedModel.from_store(store, "tiny-lora", options={"num_thread": 1}) as m:
        assert m.adapters_loaded == 1
        assert m.n_ctx == 256
        _, final = run(m, m.resolve(None))
        assert final.stats is not None and final.stats.eval_count == 3
        _, final = run(m, m.resolve({"num_predict": 5}))
        assert final.stats is not None and final.stats.eval_count == 5
    with LoadedModel.from_store(store, "tiny-lora", options={"num_ctx": 128, "num_thread": 1}) as m:
        assert m.n_ctx == 128


# -- embeddings ------------------------------------------------------------------------------


def test_embeddings_shape_and_normalization(model: LoadedModel) -> None:
    vectors = model.embed(["hello", "a longer text to embed", "hello"])
    assert len(vectors) == 3
    assert all(len(v) == model.n_embd for v in vectors)
    for v in vectors:
        assert math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-9)
    assert vectors[0] == pytest.approx(vectors[2])
    assert vectors[0] != pytest.approx(vectors[1])


def test_embedding_batch_matches_single_calls(model: LoadedModel) -> None:
    texts = ["one", "two two", "three three three"]
    batch = model.embed(texts)
    for text, vec in zip(texts, batch, strict=True):
        assert model.embed([text])[0] == pytest.approx(vec, abs=1e-6)


def test_embedding_dimensions_truncate_and_renormalize(model: LoadedModel) -> None:
    full = model.embed(["hello"])[0]
    short = model.embed(["hello"], dimensions=16)[0]
    assert len(short) == 16
    assert math.isclose(math.fsum(x * x for x in short), 1.0, rel_tol=1e-9)
    norm = math.sqrt(math.fsum(x * x for x in full[:16]))
    assert short == pytest.approx([x / norm for x in full[:16]])
    assert len(model.embed(["hello"], dimensions=1000)[0]) == model.n_embd


def test_embedding_stats_and_truncation(tiny_gguf: Path) -> None:
    load = tiny_load(num_ctx=8)
    with LoadedModel(tiny_gguf, load=load) as m:
        result = m.embed_with_stats(["hello", "hi"])
        assert result.prompt_eval_count == len(m.tokenize("hello")) + len(m.tokenize("hi"))
        long_text = "hello world " * 10
        assert len(m.embed([long_text])[0]) == m.n_embd
        with pytest.raises(InferenceError, match="exceeds the context length"):
            m.embed([long_text], truncate=False)


def test_embeddings_and_generation_share_the_model(model: LoadedModel) -> None:
    before = "".join(run(model, opts(num_predict=8))[0])
    model.embed(["interleaved"])
    assert "".join(run(model, opts(num_predict=8))[0]) == before


# -- a real model ----------------------------------------------------------------------------


@pytest.mark.slow
def test_qwen_answers_paris(qwen_gguf: Path) -> None:
    prompt = (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
        "You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with LoadedModel(qwen_gguf) as m:
        out, final = run(m, resolve_options(None, {"temperature": 0, "num_predict": 40}), prompt)
        text = "".join(out)
        assert "Paris" in text
        assert final.done_reason == "stop"  # <|im_end|> is end-of-generation
        assert "<|im_end|>" not in text
        stats = final.stats
        assert stats is not None and 0 < stats.eval_count < 40
        # a stop string taken from the answer cuts it
        out2, final2 = run(
            m,
            resolve_options(None, {"temperature": 0, "num_predict": 40, "stop": ["Paris"]}),
            prompt,
        )
        assert "".join(out2) == text[: text.index("Paris")]
        assert final2.done_reason == "stop"
        vectors = m.embed(["Paris", "France"])
        assert len(vectors) == 2 and len(vectors[0]) == m.n_embd
