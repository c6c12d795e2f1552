"""Log probabilities: the math on raw logits, their release with the text they produced
(stop strings hold text back and cut it), and generation with the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from modelkit.runtime.engine import LoadedModel
from modelkit.runtime.logprobs import Logprob, PendingLogprobs, TokenLogprob, token_logprobs


def piece(token: int) -> bytes:
    return f"t{token}".encode()


def test_token_logprobs_is_a_log_softmax_with_sorted_alternatives() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0, -1.0], dtype=np.float32)
    result = token_logprobs(logits, 2, 3, piece)
    expected = np.log(np.exp(logits) / np.exp(logits).sum())
    assert result.chosen == TokenLogprob("t2", pytest.approx(float(expected[2])), list(b"t2"))
    # Highest first; equal logits keep the lower token id first.
    assert [t.token for t in result.top] == ["t1", "t3", "t2"]
    assert [t.logprob for t in result.top] == pytest.approx([float(expected[i]) for i in (1, 3, 2)])
    assert token_logprobs(logits, 4, 0, piece).top == []
    assert len(token_logprobs(logits, 0, 20, piece).top) == 5  # never more than the vocabulary
    # Large logits stay finite (the maximum is subtracted before exponentiating).
    big = token_logprobs(np.array([1000.0, 999.0], dtype=np.float32), 0, 1, piece)
    assert big.chosen.logprob == pytest.approx(-math.log1p(math.exp(-1)))


def lp(name: str) -> Logprob:
    return Logprob(TokenLogprob(name, -1.0, list(name.encode())))


def test_pending_logprobs_go_out_with_the_first_character_of_their_text() -> None:
    pending = PendingLogprobs()
    pending.add(lp("Hel"), 3)
    pending.add(lp("lo"), 2)
    assert [x.chosen.token for x in pending.release(4)] == ["Hel", "lo"]  # "lo" started
    assert pending.release(1) == []  # the rest of "lo": already sent
    pending.add(lp("\xff"), 0)  # a partial UTF-8 character: no text yet
    pending.add(lp("!"), 1)
    assert [x.chosen.token for x in pending.release(1)] == ["\xff", "!"]
    pending.add(lp("</"), 2)  # held back by a stop matcher, then cut: never released
    assert pending.release(0) == []


def test_generation_reports_one_logprob_per_emitted_token(tiny_gguf: Path) -> None:
    with LoadedModel(tiny_gguf) as model:
        asked = {"num_predict": 8, "temperature": 0, "num_thread": 1}
        greedy = model.resolve(asked)
        chunks = list(model.generate("hello", greedy, top_logprobs=3))
        logprobs = [x for c in chunks for x in c.logprobs]
        stats = chunks[-1].stats
        assert stats is not None and stats.done_reason == "length"
        assert len(logprobs) == stats.eval_count == 8
        text = "".join(c.text for c in chunks)
        assert "".join(x.chosen.token for x in logprobs) == text
        for x in logprobs:
            assert len(x.top) == 3 and x.chosen.logprob <= 0
            assert x.top[0].token == x.chosen.token  # greedy takes the most likely token
            assert sum(math.exp(t.logprob) for t in x.top) <= 1 + 1e-6
        # Not asked: none computed.
        assert all(not c.logprobs for c in model.generate("hello", greedy))
        # A stop string cut out of the text takes the logprobs of its tokens along.
        second = logprobs[1].chosen.token
        with_stop = model.resolve({**asked, "stop": [second]})
        stopped = list(model.generate("hello", with_stop, top_logprobs=0))
        kept = [x for c in stopped for x in c.logprobs]
        assert "".join(c.text for c in stopped) == logprobs[0].chosen.token
        assert [x.chosen.token for x in kept] == [logprobs[0].chosen.token]
        assert all(x.top == [] for x in kept)
