"""Continuous batching: generation steps of parallel requests decoded together give each
request exactly what it gets alone, with grammars and log probabilities per sequence."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelkit.errors import InferenceError
from modelkit.runtime import engine
from modelkit.runtime.constrain import gbnf_for_format
from modelkit.runtime.engine import LoadedModel
from modelkit.runtime.options import load_params, resolve_options

PROMPTS = ["hello there", "the quick brown fox", "one two three four"]
REQUEST = {"num_thread": 1, "num_ctx": 256}


@pytest.fixture
def model(tiny_gguf: Path) -> LoadedModel:
    load = dataclasses.replace(load_params(resolve_options(None, REQUEST)), n_seq_max=3)
    return LoadedModel(tiny_gguf, load=load, cache_prompt=False)


def generate(model: LoadedModel, prompt: str, **kwargs: Any) -> str:
    options = model.resolve({**REQUEST, "num_predict": 40, "temperature": 0})
    return "".join(c.text for c in model.generate(prompt, options, **kwargs))


def in_parallel(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda k=k, f=f: results.__setitem__(k, f()))
        for k, f in jobs.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def count_batches(model: LoadedModel) -> list[int]:
    """Record the size of every batch of generation steps the model decodes."""
    sizes: list[int] = []
    decode = model._decode_steps

    def spy(steps: list[Any]) -> None:
        sizes.append(len(steps))
        decode(steps)

    model._decode_steps = spy  # type: ignore[method-assign]
    return sizes


def start_together(model: LoadedModel, requests: int) -> None:
    """Hold each request, once its prompt is evaluated, until all ``requests`` are: a busy
    machine could otherwise run one to its end before the others get the context."""
    barrier = threading.Barrier(requests)
    started: set[int] = set()
    generation = model._generation

    def spy(delta: int) -> None:
        if delta > 0 and threading.get_ident() not in started:
            started.add(threading.get_ident())
            barrier.wait(timeout=60)
        generation(delta)

    model._generation = spy  # type: ignore[method-assign]


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch waits up to 0.1 s (not 5 ms) for the other requests' steps: a loaded machine
    may keep a ready thread off the CPU longer than a few decodes."""
    monkeypatch.setattr(engine, "_GATHER_SECONDS", 0.1)


def test_parallel_requests_are_batched_and_answer_as_alone(
    model: LoadedModel, patient: None
) -> None:
    with model:
        alone = {p: generate(model, p) for p in PROMPTS}
        start_together(model, len(PROMPTS))
        sizes = count_batches(model)
        together = in_parallel({p: lambda p=p: generate(model, p) for p in PROMPTS})
        assert together == alone
        assert max(sizes) > 1  # steps of different requests shared a decode
        assert sum(sizes) == 3 * 39  # every step but the first (from the prompt) of each
        # The old way, one step at a time, gives the same answers.
        model.batch_steps = False
        model._generation = type(model)._generation.__get__(model)  # type: ignore[method-assign]
        sizes.clear()
        assert in_parallel({p: lambda p=p: generate(model, p) for p in PROMPTS}) == alone
        assert sizes == []


def test_grammar_and_logprobs_stay_with_their_sequence(model: LoadedModel, patient: None) -> None:
    grammar = gbnf_for_format({"type": "object", "properties": {"n": {"type": "integer"}}})
    with model:
        alone_json = generate(model, "json please", grammar=grammar)
        alone_free = generate(model, "hello there")
        chunks: dict[str, Any] = {}

        def with_logprobs() -> str:
            options = model.resolve({**REQUEST, "num_predict": 40, "temperature": 0})
            out = list(model.generate("hello there", options, top_logprobs=2))
            chunks["logprobs"] = [x for c in out for x in c.logprobs]
            return "".join(c.text for c in out)

        start_together(model, 3)
        sizes = count_batches(model)
        got = in_parallel(
            {
                "json": lambda: generate(model, "json please", grammar=grammar),
                "free": lambda: generate(model, "one two three four"),
                "logprobs": with_logprobs,
            }
        )
        assert max(sizes) > 1
        assert got["json"] == alone_json
        assert got["json"].startswith("{")  # the grammar held in the shared batch
        assert got["logprobs"] == alone_free
        logprobs = chunks["logprobs"]
        assert "".join(x.chosen.token for x in logprobs) == got["logprobs"]
        assert all(x.top[0].token == x.chosen.token for x in logprobs)


def test_one_requests_sampling_error_fails_only_that_request(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = model._sample
    calls = {"guarded": 0}

    def failing(seq: Any, idx: int) -> int:
        if seq.guard is not None:
            calls["guarded"] += 1
            if calls["guarded"] == 3:
                raise InferenceError("the sampler selected no token")
        return sample(seq, idx)

    monkeypatch.setattr(model, "_sample", failing)
    grammar = gbnf_for_format("json")

    def attempt(**kwargs: Any) -> str:
        try:
            return generate(model, "hello there", **kwargs)
        except InferenceError as err:
            return f"failed: {err}"

    with model:
        alone = generate(model, "one two three four")
        got = in_parallel(
            {
                "json": lambda: attempt(grammar=grammar),
                "plain": lambda: attempt(),
                "other": lambda: generate(model, "one two three four"),
            }
        )
    assert got["json"] == "failed: the sampler selected no token"
    assert not got["plain"].startswith("failed") and got["other"] == alone


def test_a_paused_stream_does_not_hold_batches_up(model: LoadedModel) -> None:
    with model:
        options = model.resolve({**REQUEST, "num_predict": 40, "temperature": 0})
        paused = model.generate("hello there", options)
        next(paused)  # now waiting at a yield for its reader
        assert model._generating == 0  # batches do not wait for it
        text = generate(model, "one two three four")
        assert text
        paused.close()
        assert model._generating == 0 and model._queued == []


def test_a_batch_holds_a_step_of_every_slot(tiny_gguf: Path) -> None:
    request = {**REQUEST, "num_batch": 2}
    load = dataclasses.replace(load_params(resolve_options(None, request)), n_seq_max=3)
    with LoadedModel(tiny_gguf, load=load, cache_prompt=False) as model:
        assert model.n_batch == 3  # llama.cpp aborts the process on fewer outputs than slots
        alone = {p: generate(model, p) for p in PROMPTS}
        assert in_parallel({p: lambda p=p: generate(model, p) for p in PROMPTS}) == alone
