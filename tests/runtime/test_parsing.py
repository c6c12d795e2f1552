"""Thinking and tool-call extraction from streamed output, fed in every possible split."""

from __future__ import annotations

import pytest

from modelkit.runtime.parsing import (
    ThinkingParser,
    ToolCallParser,
    thinking_tags,
    tool_call_tag,
)


def splits(text: str) -> list[list[str]]:
    """The text whole, char by char, and cut at every single position."""
    cuts = [[text], list(text)]
    cuts += [[text[:i], text[i:]] for i in range(1, len(text))]
    return cuts


def run_thinking(pieces: list[str], inside: bool = False) -> tuple[str, str]:
    parser = ThinkingParser(inside=inside)
    thinking, content = "", ""
    for piece in pieces:
        t, c = parser.feed(piece)
        thinking, content = thinking + t, content + c
    t, c = parser.finish()
    return thinking + t, content + c


@pytest.mark.parametrize("pieces", splits("<think>let me see</think>\n\nThe answer is 4."))
def test_thinking_split_any_chunking(pieces: list[str]) -> None:
    assert run_thinking(pieces) == ("let me see", "The answer is 4.")


def test_thinking_absent_and_prompt_opened() -> None:
    assert run_thinking(["Just an answer <think> in text"]) == (
        "",
        "Just an answer <think> in text",
    )
    assert run_thinking(["already thinking</think>done"], inside=True) == (
        "already thinking",
        "done",
    )
    assert run_thinking(["<think>never closed"]) == ("never closed", "")


QWEN_CALL = (
    'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>'
)


@pytest.mark.parametrize("pieces", splits(QWEN_CALL)[:40] + splits(QWEN_CALL)[60:80])
def test_qwen_tool_calls_any_chunking(pieces: list[str]) -> None:
    parser = ToolCallParser("<tool_call>", {"get_weather", "get_time"})
    content, calls = "", []
    for piece in pieces:
        text, found = parser.feed(piece)
        content += text
        calls += found
    text, found = parser.finish()
    content += text
    calls += found
    assert content == "Let me check."
    assert [(c.name, c.arguments, c.index) for c in calls] == [
        ("get_weather", {"city": "Paris"}, 0),
        ("get_time", {"tz": "CET"}, 1),
    ]
    assert all(c.id.startswith("call_") and len(c.id) == 13 for c in calls)


def test_bare_json_tool_call_and_plain_json_content() -> None:
    parser = ToolCallParser("{", {"f"})
    _, calls = parser.feed('{"name": "f", "parameters": {"x": 1}}')
    assert [(c.name, c.arguments) for c in calls] == [("f", {"x": 1})]
    other = ToolCallParser("{", {"f"})
    content, calls = other.feed('{"answer": 42}')
    rest, more = other.finish()
    assert calls == more == [] and content + rest == '{"answer": 42}'
    text = ToolCallParser("{", {"f"})
    assert text.feed("Hello {not json}") == ("Hello {not json}", [])


def test_mistral_list_form_and_unknown_tools_dropped() -> None:
    parser = ToolCallParser("[TOOL_CALLS]", {"a"})
    content, calls = parser.feed('ok [TOOL_CALLS] [{"name": "a", "arguments": {}}, ')
    more_content, more = parser.feed('{"name": "zzz", "arguments": {}}]')
    assert content == "ok " and more_content == ""
    assert [c.name for c in calls + more] == ["a"]


def test_tags_from_templates() -> None:
    qwen = (
        "{{ if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}"
        '{"name": "{{ .Function.Name }}"}{{ end }}</tool_call>{{ end }}'
    )
    assert tool_call_tag(qwen) == "<tool_call>"
    mistral = (
        '{{- if .ToolCalls }}[TOOL_CALLS] [{{ range .ToolCalls }}{"name": 1}{{ end }}]{{ end }}'
    )
    assert tool_call_tag(mistral) == "[TOOL_CALLS]"
    assert tool_call_tag("{{ .Prompt }}") == "{"
    assert thinking_tags("{{ .Thinking }}<think>x</think>") == ("<think>", "</think>")
    assert thinking_tags("{{ .Prompt }}") is None


def test_bare_json_call_is_read_even_when_the_template_has_a_tag() -> None:
    parser = ToolCallParser("<tool_call>", {"get_weather"})
    content, calls = parser.feed('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    rest, more = parser.finish()
    assert content == rest == "" and [c.name for c in calls + more] == ["get_weather"]
    prose = ToolCallParser("<tool_call>", {"get_weather"})
    text, found = prose.feed('{"not": "a call"}')
    rest, more = prose.finish()
    assert found == more == [] and text + rest == '{"not": "a call"}'
    tagged = ToolCallParser("[TOOL_CALLS]", {"a"})
    text, found = tagged.feed('[TOOL_CALLS] [{"name": "a", "arguments": {}}]')
    assert text == "" and [c.name for c in found] == ["a"]
