"""Prompt assembly (Ollama's Template.Execute): modes, collate, data types, think values."""

from __future__ import annotations

import json

import pytest

from modelkit.errors import TemplateError
from modelkit.template import (
    GoTemplate,
    Message,
    Tool,
    ToolCall,
    ToolCallFunction,
    ToolProperty,
    collate,
    render_prompt,
    think_values,
)

MISTRAL_LEGACY = GoTemplate(
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
)
CHATML = GoTemplate(
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
LLAMA3_INSTRUCT = GoTemplate(
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
SUFFIX = GoTemplate(
    "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"
    "{{- else }}{{ .Prompt }}{{- end }}"
)

SYSTEM = Message("system", "You are a helpful assistant.")
USER1 = Message("user", "Hello, how are you?")
ASSISTANT = Message("assistant", "I'm doing great. How can I help you today?")
USER2 = Message("user", "I'd like to show off how chat templating works!")

WEATHER_TOOL = Tool.from_dict(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "required": ["location"],
                "properties": {
                    "location": {"type": "string", "description": "The city"},
                    "format": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]},
                },
            },
        },
    }
)


# ---- legacy mode (reference §7.3 TestExecuteWithMessages) ---------------------------------


def test_legacy_user_assistant_user() -> None:
    messages = [
        Message("user", "Hello friend!"),
        Message("assistant", "Hello human!"),
        Message("user", "What is your name?"),
    ]
    assert render_prompt(MISTRAL_LEGACY, messages) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


def test_legacy_with_system() -> None:
    messages = [
        Message("system", "You are a helpful assistant!"),
        Message("user", "Hello friend!"),
        Message("assistant", "Hello human!"),
        Message("user", "What is your name?"),
    ]
    assert render_prompt(MISTRAL_LEGACY, messages) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human!"
        "[INST] What is your name?[/INST] "
    )


def test_legacy_trailing_assistant_is_a_prefill() -> None:
    messages = [
        Message("user", "Hello friend!"),
        Message("assistant", "Hello human!"),
        Message("user", "What is your name?"),
        Message("assistant", "My name is Ollama and I"),
    ]
    assert render_prompt(MISTRAL_LEGACY, messages) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
        "My name is Ollama and I"
    )


def test_legacy_template_with_explicit_response_and_end_marker() -> None:
    template = GoTemplate(
        "{{ if .System }}<|system|>{{ .System }}</s>{{ end }}<|user|>{{ .Prompt }}</s>"
        "<|assistant|>{{ .Response }}</s>"
    )
    messages = [SYSTEM, USER1, ASSISTANT, USER2, Message("assistant", "Sure")]
    assert render_prompt(template, messages) == (
        "<|system|>You are a helpful assistant.</s><|user|>Hello, how are you?</s>"
        "<|assistant|>I'm doing great. How can I help you today?</s>"
        "<|user|>I'd like to show off how chat templating works!</s><|assistant|>Sure"
    )


def test_legacy_second_system_message_starts_a_new_turn() -> None:
    template = GoTemplate("<{{ .System }}|{{ .Prompt }}|{{ .Response }}>")
    messages = [
        Message("system", "s1"),
        Message("user", "u1"),
        Message("system", "s2"),
        Message("user", "u2"),
        Message("tool", "ignored"),
    ]
    assert render_prompt(template, messages) == "<s1|u1|><s2|u2|"


def test_generate_prompt_is_a_user_message() -> None:
    assert render_prompt(MISTRAL_LEGACY, [SYSTEM], prompt="Hi") == (
        "[INST] You are a helpful assistant.\n\nHi[/INST] "
    )
    assert render_prompt(GoTemplate("{{ .Prompt }}"), prompt="just this") == "just this"


# ---- suffix mode (TestExecuteWithSuffix) --------------------------------------------------


def test_suffix_mode() -> None:
    assert render_prompt(SUFFIX, [Message("user", "hello")]) == "hello"
    assert render_prompt(SUFFIX, prompt="def add(", suffix="return x") == (
        "<PRE> def add( <SUF>return x <MID>"
    )


# ---- messages mode (§7.5 examples, §7.6 conversations) -----------------------------------


def test_chatml_messages() -> None:
    assert render_prompt(CHATML, [SYSTEM, USER1, ASSISTANT, USER2]) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
        "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_llama3_instruct_messages() -> None:
    assert render_prompt(LLAMA3_INSTRUCT, [USER1]) == (
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render_prompt(LLAMA3_INSTRUCT, [SYSTEM, USER1, ASSISTANT, USER2]) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "I'm doing great. How can I help you today?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "I'd like to show off how chat templating works!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_messages_mode_values() -> None:
    template = GoTemplate(
        "{{ .System }}|{{ len .Messages }}|{{ .Response }}|{{ .Think }}|{{ .ThinkLevel }}|"
        "{{ .IsThinkSet }}|{{ .Prompt }}"
    )
    out = render_prompt(
        template, [Message("system", "a"), Message("system", "b"), USER1], think="high"
    )
    assert out == "a\n\nb|2||true|high|true|<no value>"


def test_messages_accept_api_dicts() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert render_prompt(CHATML, messages).startswith("<|im_start|>user\nhi<|im_end|>\n")


def test_message_fields_are_go_fields() -> None:
    template = GoTemplate("{{ range .Messages }}{{ .Nope }}{{ end }}")
    with pytest.raises(TemplateError) as info:
        render_prompt(template, [USER1])
    assert "can't evaluate field Nope in type *template.templateMessage" in str(info.value)


# ---- collate ------------------------------------------------------------------------------


def test_collate_merges_same_role_runs_but_not_tools() -> None:
    messages = [
        Message("system", "You are helpful."),
        Message("user", "Hello"),
        Message("user", "Are you there?"),
        Message("assistant", "Yes."),
        Message("tool", "r1", tool_name="a"),
        Message("tool", "r2", tool_name="b"),
        Message("system", "Be brief."),
    ]
    system, collated = collate(messages)
    assert system == "You are helpful.\n\nBe brief."
    assert [(m.role, m.content) for m in collated] == [
        ("system", "You are helpful."),
        ("user", "Hello\n\nAre you there?"),
        ("assistant", "Yes."),
        ("tool", "r1"),
        ("tool", "r2"),
        ("system", "Be brief."),
    ]
    assert [m.tool_name for m in collated[3:5]] == ["a", "b"]
    assert messages[1].content == "Hello"  # input untouched


# ---- think ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, (False, "", False)),
        (False, (False, "", True)),
        (True, (True, "medium", True)),
        ("low", (True, "low", True)),
        ("max", (True, "max", True)),
    ],
)
def test_think_values(think: bool | str | None, expected: tuple[bool, str, bool]) -> None:
    values = think_values(think)
    assert (values["Think"], values["ThinkLevel"], values["IsThinkSet"]) == expected


def test_bad_think_value() -> None:
    with pytest.raises(ValueError, match='invalid think value: "extreme"'):
        think_values("extreme")


def test_think_in_legacy_and_suffix_modes() -> None:
    template = GoTemplate("{{ if .Think }}<think>{{ end }}{{ .Prompt }}{{ .Suffix }}")
    assert render_prompt(template, [USER1], think=True) == "<think>Hello, how are you?<no value>"
    assert render_prompt(template, prompt="a", suffix="b", think=True) == "<think>ab"


# ---- tools and tool calls -----------------------------------------------------------------


def test_tools_print_as_go_json() -> None:
    template = GoTemplate(
        "{{ .Tools }}\n{{ range .Tools }}{{ . }}|{{ json . }}{{ end }}{{ .Messages }}"
    )
    out = render_prompt(template, [USER1], tools=[WEATHER_TOOL]).split("\n")
    tool_json = (
        '{"type":"function","function":{"name":"get_weather","description":"Get the weather",'
        '"parameters":{"type":"object","required":["location"],"properties":{'
        '"format":{"type":["string","null"],"enum":["celsius","fahrenheit"]},'
        '"location":{"type":"string","description":"The city"}}}}}'
    )
    assert out[0] == f"[{tool_json}]"
    assert out[1].startswith(f"{tool_json}|{tool_json}")
    assert json.loads(out[0])[0]["function"]["name"] == "get_weather"


def test_nil_and_empty_tool_lists() -> None:
    template = GoTemplate("{{ .Tools }}|{{ if .Tools }}yes{{ else }}no{{ end }}{{ .Messages }}")
    assert render_prompt(template, []).startswith("null|no")
    assert render_prompt(template, [], tools=[]).startswith("[]|no")


def test_properties_range_and_print() -> None:
    template = GoTemplate(
        "{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}"
        "{{ $k }}:{{ $v.Type }};{{ end }}|{{ .Function.Parameters.Properties }}{{ end }}"
        "{{ .Messages }}"
    )
    out = render_prompt(template, [], tools=[WEATHER_TOOL])
    props, printed = out.split("|")[0], out.split("|")[1].split("[]")[0]
    assert props == "format:[string null];location:string;"
    assert "map[" not in printed
    assert json.loads(printed)["location"] == {"type": "string", "description": "The city"}


def test_tool_call_arguments_range_and_print_as_json() -> None:
    call = ToolCall(ToolCallFunction("get_weather", {"city": "Tokyo", "days": 3}), id="call_1")
    messages = [USER1, Message("assistant", tool_calls=[call])]
    template = GoTemplate(
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .ID }} {{ .Function.Index }} "
        "{{ .Function.Name }} {{ .Function.Arguments }} "
        "{{ range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }};{{ end }}{{ end }}{{ end }}"
    )
    out = render_prompt(template, messages)
    assert out == 'call_1 0 get_weather {"city":"Tokyo","days":3} city=Tokyo;days=3;'


def test_tool_call_arguments_are_float64_like_go() -> None:
    call = ToolCall(ToolCallFunction("f", {"n": 1000000, "ok": True}))
    template = GoTemplate(
        "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments.n }} "
        "{{ .Function.Arguments.ok }} {{ json .Function.Arguments }}{{ end }}{{ end }}"
    )
    out = render_prompt(template, [Message("assistant", tool_calls=[call])])
    assert out == '1e+06 true {"n":1000000,"ok":true}'


def test_message_from_dict_with_tool_calls_and_images() -> None:
    msg = Message.from_dict(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "function": {"index": 2, "name": "f", "arguments": {"a": 1}}}
            ],
            "images": ["aGk="],
        }
    )
    assert msg.tool_calls[0].id == "c1"
    assert msg.tool_calls[0].function.index == 2
    assert msg.images == [b"hi"]
    tool_msg = Message.from_dict(
        {"role": "tool", "content": "r", "tool_name": "f", "tool_call_id": "c1"}
    )
    template = GoTemplate("{{ range .Messages }}{{ .ToolName }}/{{ .ToolCallID }}{{ end }}")
    assert render_prompt(template, [tool_msg]) == "f/c1"


def test_typescript_types_of_tool_properties() -> None:
    template = GoTemplate(
        "{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}"
        "{{ $k }}: {{ toTypeScriptType $v }}; {{ end }}{{ end }}{{ .Messages }}"
    )
    tool = Tool.from_dict(
        {
            "type": "function",
            "function": {
                "name": "t",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "integer"},
                        "b": {"type": ["string", "null"]},
                        "c": {"anyOf": [{"type": "boolean"}, {"type": "array"}]},
                        "d": {},
                    },
                },
            },
        }
    )
    assert render_prompt(template, [], tools=[tool]) == (
        "a: number; b: string | null; c: boolean | any[]; d: any; []"
    )
    assert ToolProperty.from_dict({"type": "object"}).to_typescript_type() == "Record<string, any>"
