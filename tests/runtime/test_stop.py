"""The stop-string holdback logic on synthetic chunk lists (no model needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit.runtime import StopMatcher, apply_stops


def test_stop_split_across_two_chunks_is_cut() -> None:
    out, stopped = apply_stops(["Hel", "lo</", "s> more"], ["</s>"])
    assert "".join(out) == "Hello"
    assert stopped


def test_stop_split_across_many_chunks() -> None:
    out, stopped = apply_stops(["a<", "|", "im_", "end", "|>b", "c"], ["<|im_end|>"])
    assert out == ["a"]
    assert stopped


def test_held_prefix_is_released_when_it_does_not_become_a_stop() -> None:
    m = StopMatcher(["<|x"])
    assert m.feed("a<") == "a"
    assert m.held == "<"
    assert m.feed("|") == ""
    assert m.held == "<|"
    assert m.feed("y") == "<|y"
    assert not m.stopped
    assert m.flush() == ""


def test_stop_inside_one_chunk() -> None:
    assert apply_stops(["xSTOPy"], ["STOP"]) == (["x"], True)


def test_stop_at_the_very_start() -> None:
    assert apply_stops(["ST", "OP", "rest"], ["STOP"]) == ([], True)


def test_earliest_of_several_stops_wins() -> None:
    m = StopMatcher(["STOP", "END"])
    assert m.feed("abc END def STOP") == "abc "
    assert m.matched == "END"


def test_the_first_completed_stop_wins_whatever_the_chunking() -> None:
    # "x" is complete at index 3, before "<x<" could be; a longer stop that starts earlier
    # but is not complete yet does not count, in one piece or in two.
    assert apply_stops(["<<x<"], ["x", "<x<"]) == (["<<"], True)
    assert apply_stops(["<<x", "<"], ["x", "<x<"]) == (["<<"], True)
    # completed at the same place: the one starting first is cut
    assert apply_stops(["ab"], ["b", "ab"]) == ([], True)


def test_overlapping_partial_matches() -> None:
    # "abab" ends with "ab", a prefix of "abcd": the first "ab" is safe, the second held.
    m = StopMatcher(["abcd"])
    assert m.feed("ab") == ""
    assert m.feed("ab") == "ab"
    assert m.feed("cd") == ""
    assert m.stopped


def test_end_of_stream_releases_the_held_text() -> None:
    m = StopMatcher(["<end>"])
    assert m.feed("foo <") == "foo "
    assert m.flush() == "<"
    assert not m.stopped


def test_nothing_after_a_stop() -> None:
    m = StopMatcher(["X"])
    assert m.feed("aXb") == "a"
    assert m.feed("more") == ""
    assert m.flush() == ""


def test_no_stops_passes_everything_through() -> None:
    m = StopMatcher([])
    assert [m.feed(p) for p in ["a", "b<", "c"]] == ["a", "b<", "c"]
    assert m.flush() == ""


def test_empty_stop_strings_are_ignored() -> None:
    assert apply_stops(["abc"], ["", "z"]) == (["abc"], False)


def test_unicode_stop() -> None:
    assert apply_stops(["Bonjour «", "fin", "» x"], ["«fin»"]) == (["Bonjour "], True)


@st.composite
def _text_and_cuts(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    alphabet = st.sampled_from("ab<|>x")
    text = draw(st.text(alphabet, max_size=40))
    stops = draw(st.lists(st.text(alphabet, min_size=1, max_size=4), max_size=3))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=10)))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return text, pieces, stops


@settings(max_examples=300)
@given(_text_and_cuts())
def test_output_is_the_text_before_the_first_stop(case: tuple[str, list[str], list[str]]) -> None:
    text, pieces, stops = case
    # the oracle: scan the text one character at a time
    expected, stopped = text, False
    for end in range(1, len(text) + 1):
        done = [end - len(s) for s in stops if s and text[:end].endswith(s)]
        if done:
            expected, stopped = text[: min(done)], True
            break
    matcher = StopMatcher(stops)
    emitted = ""
    for piece in pieces:
        emitted += matcher.feed(piece)
        # Nothing emitted so far may contain (or be cut inside) a stop string.
        assert not any(s in emitted for s in stops)
        assert expected.startswith(emitted)
    emitted += matcher.flush()
    assert emitted == expected
    assert matcher.stopped == stopped
