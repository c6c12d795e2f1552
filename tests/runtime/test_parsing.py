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


def run_tools(
    pieces: list[str], tag: str = "<tool_call>", names: tuple[str, ...] = ("get_weather",)
) -> tuple[str, list[tuple[str, dict[str, object], int]]]:
    """Feed ``pieces`` through a ToolCallParser; the content and (name, arguments, index)."""
    parser = ToolCallParser(tag, set(names))
    content, calls = "", []
    for piece in pieces:
        text, found = parser.feed(piece)
        content += text
        calls += found
    text, found = parser.finish()
    return content + text, [(c.name, c.arguments, c.index) for c in calls + found]


# What Qwen2.5-Coder-0.5B answers to LangChain's bind_tools: a fenced call, no tag.
FENCED_CALL = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
PARIS = ("get_weather", {"city": "Paris"}, 0)


@pytest.mark.parametrize("tag", ["<tool_call>", "{", "[TOOL_CALLS]"])
@pytest.mark.parametrize("pieces", splits(FENCED_CALL))
def test_fenced_tool_call_any_chunking(pieces: list[str], tag: str) -> None:
    assert run_tools(pieces, tag) == ("", [PARIS])


FENCED_WITH_PROSE = f"Let me look that up.\n{FENCED_CALL}\nOne moment!"


@pytest.mark.parametrize("pieces", splits(FENCED_WITH_PROSE))
def test_fenced_tool_call_with_prose_before_and_after(pieces: list[str]) -> None:
    assert run_tools(pieces) == ("Let me look that up.\n\nOne moment!", [PARIS])


FENCED_CALLS = (
    '```\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```\nand\n'
    '```JSON\n{"name": "get_time", "arguments": {"tz": "CET"}}\n'
    '{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}\n```'
)


@pytest.mark.parametrize("pieces", splits(FENCED_CALLS))
def test_several_fenced_tool_calls(pieces: list[str]) -> None:
    assert run_tools(pieces, names=("get_weather", "get_time")) == (
        "\nand\n",
        [PARIS, ("get_time", {"tz": "CET"}, 1), ("get_weather", {"city": "Rome"}, 2)],
    )


def test_fenced_list_and_tagged_forms() -> None:
    listed = '```json\n[{"name": "get_weather", "arguments": {"city": "Paris"}}]\n```'
    assert run_tools([listed]) == ("", [PARIS])
    tagged = (
        '```json\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call>\n```"
    )
    assert run_tools([tagged]) == ("", [PARIS])
    assert run_tools(list(tagged)) == ("", [PARIS])
    # The output ended (stop string, token limit) before the closing fence.
    assert run_tools([FENCED_CALL[:-3]]) == ("", [PARIS])
    assert run_tools([FENCED_CALL[:-1]]) == ("", [PARIS])
    # A tag after a fenced call is still read.
    then_tagged = FENCED_CALL + '\n<tool_call>{"name": "get_weather", "arguments": {}}'
    assert run_tools([then_tagged]) == ("\n", [PARIS, ("get_weather", {}, 1)])


NOT_CALLS = [
    # a tool that was not offered
    '```json\n{"name": "get_time", "arguments": {"tz": "CET"}}\n```',
    # ordinary JSON data that happens to have a name
    'Here:\n```json\n{"name": "Alice", "age": 30}\n```\nDone.',
    '```json\n{"name": "get_weather"}\n```',  # no arguments
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}} trailing\n```',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}, {"x": 1}\n```',
    '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}',  # cut short
    '```json\n{"name": "get_weather_now", "arguments": {}}\n```',
    "```json\n[]\n```",
    "```\n```",
    # other languages, inline backticks, unclosed and empty fences
    '```python\nprint({"name": "get_weather", "arguments": {}})\n```\nok',
    "Use `x` or ``y`` and ```z``` here.",
    '```js\n{"name": "get_weather", "arguments": {}}\n```',
    # after an ordinary block, its closing fence does not open a new one
    '```python\nx = 1\n```\n{"name": "get_weather", "arguments": {}}\n```',
    "Trailing backticks ``",
    "```json",
]


@pytest.mark.parametrize("text", NOT_CALLS)
def test_other_fences_pass_through_unchanged(text: str) -> None:
    for pieces in splits(text):
        assert run_tools(pieces) == (text, []), pieces


def test_fences_are_not_calls_without_tools() -> None:
    assert run_tools([FENCED_CALL], names=()) == (FENCED_CALL, [])
    assert run_tools(list(FENCED_CALL), tag="{", names=()) == (FENCED_CALL, [])


def test_fences_that_cannot_be_calls_stream_at_once() -> None:
    """Only a fence that still looks like a call is held back; the rest streams."""
    for text, shown in [
        ("```python\nprint(1)\n", "```python\nprint(1)\n"),
        ('```json\n{"name": "Alice"', '```json\n{"name": "Alice"'),
        ('```json\n{"age": 3', '```json\n{"age": 3'),
        ('Hi ```json\n{"name": "get_w', "Hi "),
        ("Hi ``", "Hi "),
        ("Hi ```js", "Hi "),
    ]:
        parser = ToolCallParser("<tool_call>", {"get_weather"})
        assert "".join(parser.feed(ch)[0] for ch in text) == shown, text
