"""Hugging Face Jinja2 chat templates and telling them from Go templates."""

from __future__ import annotations

import pytest

from modelkit.errors import TemplateError
from modelkit.template import (
    JinjaTemplate,
    Message,
    Tool,
    ToolCall,
    ToolCallFunction,
    is_jinja_template,
)

CHATML_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TOOLS_JINJA = (
    "{{ bos_token }}{% if tools %}TOOLS:{% for tool in tools %} {{ tool.function.name }}="
    "{{ tool | tojson }}{% endfor %}{{ '\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message.tool_calls %}CALL:{% for call in message.tool_calls %} "
    "{{ call.function.name }}{{ call.function.arguments | tojson }}{% endfor %}"
    "{% elif message.role == 'tool' %}RESULT({{ message.name }}): {{ message.content }}"
    "{% else %}{{ message.role | upper }}: {{ message.content }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% else %}{{ eos_token }}{% endif %}"
)


def test_chatml_jinja_render() -> None:
    template = JinjaTemplate(CHATML_JINJA)
    messages = [Message("system", "Be nice."), Message("user", "Hi")]
    assert template.render(messages) == (
        "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.render(messages, add_generation_prompt=False).endswith("Hi<|im_end|>\n")


def test_tools_tool_calls_and_special_tokens() -> None:
    tool = Tool.from_dict(
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Météo",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    )
    call = ToolCall(ToolCallFunction("get_weather", {"city": "Zürich"}))
    messages = [
        Message("user", "Weather?"),
        Message("assistant", tool_calls=[call]),
        Message("tool", "5°C", tool_name="get_weather"),
    ]
    template = JinjaTemplate(TOOLS_JINJA, bos_token="<s>", eos_token="</s>")
    assert template.render(messages, tools=[tool]) == (
        "<s>TOOLS: get_weather="
        '{"type": "function", "function": {"name": "get_weather", "description": "Météo", '
        '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}'
        "\nUSER: Weather?\n"
        'CALL: get_weather{"city": "Zürich"}\n'
        "RESULT(get_weather): 5°C\n"
        "ASSISTANT:"
    )
    assert (
        template.render([Message("user", "x")], add_generation_prompt=False) == "<s>USER: x\n</s>"
    )


def test_dict_messages_and_extra_variables() -> None:
    template = JinjaTemplate("{{ messages[0].content }}|{{ enable_thinking }}|{{ tools }}")
    out = template.render([{"role": "user", "content": "hey"}], enable_thinking=False)
    assert out == "hey|False|None"


def test_raise_exception_and_errors() -> None:
    template = JinjaTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start "
        "with user') }}{% endif %}ok"
    )
    assert template.render([Message("user", "a")]) == "ok"
    with pytest.raises(TemplateError, match="Conversation must start with user"):
        template.render([Message("assistant", "a")])
    with pytest.raises(TemplateError) as info:
        JinjaTemplate("line one\n{% if %}")
    assert info.value.line == 2
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        JinjaTemplate("{{ 1 // 0 }}").render([])


def test_sandbox_is_immutable() -> None:
    with pytest.raises(TemplateError, match="SecurityError"):
        JinjaTemplate("{{ messages.append(1) }}").render([])
    assert JinjaTemplate("{{ ''.__class__ }}").render([]) == ""


def test_loop_controls_and_strftime() -> None:
    out = JinjaTemplate(
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}"
        "{% endfor %}|{{ strftime_now('%Y') | length }}"
    ).render([Message("user", "a"), Message("user", "b")])
    assert out == "a|4"


@pytest.mark.parametrize(
    ("text", "jinja"),
    [
        (CHATML_JINJA, True),
        (TOOLS_JINJA, True),
        ("{{ bos_token }}{{ messages[0]['content'] }}", True),
        ("{{ message.content | trim }}", True),
        ("{# comment #}hello", True),
        ("{{ .Prompt }}", False),
        ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}{{ end }}", False),
        ('{{ if .System }}{{ .System }}{{ end }}{{ template "x" . }}', False),
        ("{{ $x := .Prompt }}{{ $x }}", False),
        ('{{ json .Tools }}{{ printf "%s" .Prompt }}', False),
        ("plain text, no actions", False),
        ("", False),
    ],
)
def test_is_jinja_template(text: str, jinja: bool) -> None:
    assert is_jinja_template(text) is jinja
