"""Continuous batching: one thread decodes the steps of every running request together, each
request gets exactly what it gets alone (grammars and log probabilities per sequence), and a
newcomer's long prompt goes in chunks between the others' steps."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelkit.errors import InferenceError
from modelkit.runtime.constrain import gbnf_for_format
from modelkit.runtime.engine import Chunk, LoadedModel
from modelkit.runtime.engine.batcher import PROMPT_CHUNK, BatchEntry
from modelkit.runtime.engine.sampling import Sampler
from modelkit.runtime.options import load_params, resolve_options

PROMPTS = ["hello there", "the quick brown fox", "one two three four"]
REQUEST = {"num_thread": 1, "num_ctx": 256}


def make_model(gguf: Path, slots: int = 3, **request: Any) -> LoadedModel:
    load = load_params(resolve_options(None, {**REQUEST, **request}))
    return LoadedModel(gguf, load=dataclasses.replace(load, n_seq_max=slots), cache_prompt=False)


@pytest.fixture
def model(tiny_gguf: Path) -> Iterator[LoadedModel]:
    with make_model(tiny_gguf) as m:
        yield m


def options(model: LoadedModel, **extra: Any) -> Any:
    return model.resolve({**REQUEST, "num_predict": 40, "temperature": 0, **extra})


def generate(model: LoadedModel, prompt: str, **kwargs: Any) -> str:
    return "".join(c.text for c in model.generate(prompt, options(model), **kwargs))


class Collected:
    """A generation submitted straight to the batcher, and what it emits."""

    def __init__(self, model: LoadedModel, prompt: str, opts: Any = None, **kwargs: Any) -> None:
        self.items: queue.SimpleQueue[Chunk | BaseException] = queue.SimpleQueue()
        self.gen = model.prepare(prompt, opts or options(model), self.items.put, **kwargs)

    def result(self) -> tuple[str, list[Chunk]]:
        chunks: list[Chunk] = []
        while not (chunks and chunks[-1].done):
            item = self.items.get(timeout=60)
            if isinstance(item, BaseException):
                raise item
            chunks.append(item)
        return "".join(c.text for c in chunks), chunks


def submit_together(model: LoadedModel, collected: list[Collected]) -> None:
    """Queue every request while the batcher is held, so they all start in the same step."""
    with model.batcher.held():
        for c in collected:
            model.submit(c.gen)


def record_batches(model: LoadedModel) -> list[list[BatchEntry]]:
    """Every batch the model decodes from now on."""
    batches: list[list[BatchEntry]] = []
    decode = model.batcher.decode

    def spy(entries: list[BatchEntry]) -> None:
        batches.append(list(entries))
        decode(entries)

    model.batcher.decode = spy  # type: ignore[method-assign]
    return batches


def test_parallel_requests_are_batched_and_answer_as_alone(model: LoadedModel) -> None:
    alone = {p: generate(model, p) for p in PROMPTS}
    batches = record_batches(model)
    collected = [Collected(model, p) for p in PROMPTS]
    submit_together(model, collected)
    together = {p: c.result()[0] for p, c in zip(PROMPTS, collected, strict=True)}
    assert together == alone
    samples = [sum(e.logits for e in batch) for batch in batches]
    assert samples[0] == 3  # the three prompts in one decode, each sampled once
    assert max(samples) == 3 and samples.count(3) >= 39
    assert sum(samples) == 3 * 40  # one sample per generated token, no more


def test_batches_are_in_slot_order(model: LoadedModel) -> None:
    batches = record_batches(model)
    collected = [Collected(model, p) for p in PROMPTS]
    submit_together(model, collected)
    for c in collected:
        c.result()
    for batch in batches:
        assert [e.slot for e in batch] == sorted(e.slot for e in batch)


def test_grammar_and_logprobs_stay_with_their_sequence(model: LoadedModel) -> None:
    grammar = gbnf_for_format({"type": "object", "properties": {"n": {"type": "integer"}}})
    alone_json = generate(model, "json please", grammar=grammar)
    alone_free = generate(model, "hello there")
    batches = record_batches(model)
    json_req = Collected(model, "json please", grammar=grammar)
    free_req = Collected(model, "one two three four")
    logprob_req = Collected(model, "hello there", top_logprobs=2)
    submit_together(model, [json_req, free_req, logprob_req])
    json_text, _ = json_req.result()
    free_req.result()
    text, chunks = logprob_req.result()
    assert max(sum(e.logits for e in b) for b in batches) == 3
    assert json_text == alone_json and json_text.startswith("{")  # the grammar held
    assert text == alone_free
    logprobs = [x for c in chunks for x in c.logprobs]
    assert "".join(x.chosen.token for x in logprobs) == text
    assert all(x.top[0].token == x.chosen.token for x in logprobs)


def test_one_requests_sampling_error_fails_only_that_request(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = Sampler.sample
    calls = {"guarded": 0}

    def failing(self: Sampler, ctx: Any, idx: int) -> int:
        if self.guard is not None:
            calls["guarded"] += 1
            if calls["guarded"] == 3:
                raise InferenceError("the sampler selected no token")
        return sample(self, ctx, idx)

    alone = generate(model, "one two three four")
    monkeypatch.setattr(Sampler, "sample", failing)
    guarded = Collected(model, "hello there", grammar=gbnf_for_format("json"))
    plain = Collected(model, "hello there")
    other = Collected(model, "one two three four")
    submit_together(model, [guarded, plain, other])
    with pytest.raises(InferenceError, match="the sampler selected no token"):
        guarded.result()
    assert plain.result()[0] and other.result()[0] == alone
    assert model.batcher.busy == 0


def test_a_paused_stream_does_not_hold_the_others_up(model: LoadedModel) -> None:
    paused = model.generate("hello there", options(model))
    next(paused)  # its reader stops here; the batcher goes on without it
    assert generate(model, "one two three four")
    paused.close()
    wait_for(lambda: model.batcher.busy == 0)


def test_a_cancelled_request_frees_its_slot(tiny_gguf: Path) -> None:
    with make_model(tiny_gguf, slots=1) as m:
        stream = m.generate("hello there", options(m, num_predict=200))
        next(stream)
        stream.close()  # one slot: the next request would wait forever if it leaked
        assert generate(m, "one two three four")


def test_a_long_prompt_goes_in_chunks_between_the_others_steps(tiny_gguf: Path) -> None:
    with make_model(tiny_gguf, slots=2, num_ctx=1024, num_batch=512) as m:
        batches = record_batches(m)
        first = Collected(m, "hello there", options(m, num_predict=400))
        m.submit(first.gen)
        wait_for(lambda: len(batches) >= 3)  # the first request is generating
        long_prompt = " ".join(f"word{i}" for i in range(300))
        newcomer = Collected(m, long_prompt, options(m, num_predict=5))
        n_prompt = len(newcomer.gen.prompt)
        assert n_prompt > 2 * PROMPT_CHUNK
        with m.batcher.held():
            assert not first.gen.done
            m.submit(newcomer.gen)
        first.result()
        newcomer.result()
    newcomer_slot = newcomer.gen.slot
    prompt_batches = [
        b for b in batches if any(e.slot == newcomer_slot and not e.logits for e in b)
    ]
    assert len(prompt_batches) >= 3  # the prompt went in several chunks
    for batch in prompt_batches:
        mine = [e for e in batch if e.slot == newcomer_slot]
        others = [e for e in batch if e.slot != newcomer_slot]
        assert len(mine) <= PROMPT_CHUNK
        assert len(others) == 1 and others[0].logits  # the first request's step went along


def test_unloading_fails_what_is_in_flight(tiny_gguf: Path) -> None:
    m = make_model(tiny_gguf, slots=1)
    running = Collected(m, "hello there", options(m, num_predict=-1))
    waiting = Collected(m, "one two three four")
    m.submit(running.gen)
    m.submit(waiting.gen)
    m.close()
    for c in (running, waiting):
        with pytest.raises(InferenceError, match="unloaded"):
            c.result()


def test_a_batch_holds_a_step_of_every_slot(tiny_gguf: Path) -> None:
    with make_model(tiny_gguf, slots=3, num_batch=2) as m:
        assert m.n_batch == 3  # llama.cpp aborts the process on fewer outputs than slots
        alone = {p: generate(m, p) for p in PROMPTS}
        collected = [Collected(m, p) for p in PROMPTS]
        submit_together(m, collected)
        assert {p: c.result()[0] for p, c in zip(PROMPTS, collected, strict=True)} == alone


def test_generations_from_many_threads(model: LoadedModel) -> None:
    alone = {p: generate(model, p) for p in PROMPTS}
    results: dict[int, str] = {}

    def run(i: int) -> None:
        results[i] = generate(model, PROMPTS[i % 3])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert {i: alone[PROMPTS[i % 3]] for i in range(9)} == results


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
