"""Real-world Ollama-style templates (written for these tests after the structure of the
qwen2.5, llama3.1 and mistral library templates): exact prompts for a system+user chat and a
tool-call conversation. The expected strings were worked out by hand from Go's trimming rules."""

from __future__ import annotations

import pytest

from modelkit.template import GoTemplate, Message, Tool, ToolCall, ToolCallFunction, render_prompt

QWEN25 = GoTemplate(
    "{{- if .Messages }}\n"
    "{{- if or .System .Tools }}<|im_start|>system\n"
    "{{- if .System }}\n"
    "{{ .System }}\n"
    "{{- end }}\n"
    "{{- if .Tools }}\n"
    "\n"
    "# Tools\n"
    "\n"
    "You may call one or more functions to assist with the user query.\n"
    "\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n"
    "{{- range .Tools }}\n"
    '{"type": "function", "function": {{ .Function }}}\n'
    "{{- end }}\n"
    "</tools>\n"
    "\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>\n"
    "{{- end }}<|im_end|>\n"
    "{{ end }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n"
    '{{- if eq .Role "user" }}<|im_start|>user\n'
    "{{ .Content }}<|im_end|>\n"
    '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n'
    "{{ if .Content }}{{ .Content }}\n"
    "{{- else if .ToolCalls }}<tool_call>\n"
    '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": '
    "{{ .Function.Arguments }}}\n"
    "{{ end }}</tool_call>\n"
    "{{- end }}{{ if not $last }}<|im_end|>\n"
    "{{ end }}\n"
    '{{- else if eq .Role "tool" }}<|im_start|>user\n'
    "<tool_response>\n"
    "{{ .Content }}\n"
    "</tool_response><|im_end|>\n"
    "{{ end }}\n"
    '{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant\n'
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- else }}\n"
    "{{- if .System }}<|im_start|>system\n"
    "{{ .System }}<|im_end|>\n"
    "{{ end }}{{ if .Prompt }}<|im_start|>user\n"
    "{{ .Prompt }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
    "{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"
)

LLAMA31 = GoTemplate(
    "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n"
    "{{- if .System }}\n"
    "\n"
    "{{ .System }}\n"
    "{{- end }}\n"
    "{{- if .Tools }}\n"
    "\n"
    "You are a helpful assistant with tool calling capabilities.\n"
    "{{- end }}<|eot_id|>\n"
    "{{- end }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>\n'
    "{{- if and $.Tools $last }}\n"
    "\n"
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n"
    "\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name '
    "and its value}. Do not use variables.\n"
    "\n"
    "{{ range $.Tools }}\n"
    "{{- . }}\n"
    "{{ end }}\n"
    "Question: {{ .Content }}<|eot_id|>\n"
    "{{- else }}\n"
    "\n"
    "{{ .Content }}<|eot_id|>\n"
    "{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{{ end }}\n"
    '{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>\n'
    "{{- if .ToolCalls }}\n"
    "{{ range .ToolCalls }}\n"
    '{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}\n'
    "{{- else }}\n"
    "\n"
    "{{ .Content }}\n"
    "{{- end }}{{ if not $last }}<|eot_id|>{{ end }}\n"
    '{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>\n'
    "\n"
    "{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- end }}"
)

MISTRAL = GoTemplate(
    "{{- if .Messages }}\n"
    "{{- range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "user" }}\n'
    "{{- if and (eq (len (slice $.Messages $index)) 1) $.Tools }}[AVAILABLE_TOOLS] "
    "{{ $.Tools }}[/AVAILABLE_TOOLS]\n"
    "{{- end }}[INST] {{ if and $.System (eq (len (slice $.Messages $index)) 1) }}"
    "{{ $.System }}\n"
    "\n"
    "{{ end }}{{ .Content }}[/INST]\n"
    '{{- else if eq .Role "assistant" }}\n'
    "{{- if .Content }} {{ .Content }}\n"
    "{{- else if .ToolCalls }}[TOOL_CALLS] [\n"
    '{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": '
    "{{ .Function.Arguments }}}\n"
    "{{- end }}]\n"
    "{{- end }}</s>\n"
    '{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}} [/TOOL_RESULTS]\n'
    "{{- end }}\n"
    "{{- end }}\n"
    "{{- else }}[INST] {{ if .System }}{{ .System }}\n"
    "\n"
    "{{ end }}{{ .Prompt }}[/INST]\n"
    "{{- end }} {{ .Response }}\n"
    "{{- if .Response }}</s>\n"
    "{{- end }}"
)

SYSTEM = Message("system", "You are a helpful assistant.")
HELLO = Message("user", "Hello")
ASK = Message("user", "What's the weather in Paris?")
CALL = Message(
    "assistant", tool_calls=[ToolCall(ToolCallFunction("get_weather", {"city": "Paris"}))]
)
RESULT = Message("tool", "22°C", tool_name="get_weather")
TOOLS = [
    Tool.from_dict(
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string", "description": "The city"}},
                },
            },
        }
    )
]
FUNCTION_JSON = (
    '{"name":"get_weather","description":"Get the current weather","parameters":{"type":"object",'
    '"required":["city"],"properties":{"city":{"type":"string","description":"The city"}}}}'
)
TOOL_JSON = '{"type":"function","function":' + FUNCTION_JSON + "}"


def test_template_kinds() -> None:
    for template in (QWEN25, LLAMA31, MISTRAL):
        assert template.uses("messages")
        assert template.uses("tools")


# ---- qwen2.5 (ChatML with tools) ---------------------------------------------------------


def test_qwen25_system_user() -> None:
    assert render_prompt(QWEN25, [SYSTEM, HELLO]) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen25_user_only() -> None:
    assert render_prompt(QWEN25, [HELLO]) == (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen25_tool_call_conversation() -> None:
    assert render_prompt(QWEN25, [ASK, CALL, RESULT], tools=TOOLS) == (
        "<|im_start|>system\n"
        "\n"
        "# Tools\n"
        "\n"
        "You may call one or more functions to assist with the user query.\n"
        "\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>\n"
        '{"type": "function", "function": ' + FUNCTION_JSON + "}\n"
        "</tools>\n"
        "\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n"
        "<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        "<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city":"Paris"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n22°C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen25_generate_prompt() -> None:
    # /api/generate with a system prompt: Messages mode still (the template uses .Messages),
    # so the prompt arrives as the last user message.
    assert render_prompt(QWEN25, [SYSTEM], prompt="Hi") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


# ---- llama3.1 ----------------------------------------------------------------------------


def test_llama31_system_user() -> None:
    assert render_prompt(LLAMA31, [SYSTEM, HELLO]) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama31_tool_call_conversation() -> None:
    assert render_prompt(LLAMA31, [ASK, CALL, RESULT], tools=TOOLS) == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant with tool calling capabilities.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat's the weather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city":"Paris"}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n22°C<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama31_tools_offered_in_last_user_turn() -> None:
    assert render_prompt(LLAMA31, [ASK], tools=TOOLS) == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant with tool calling capabilities.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its "
        "proper arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name '
        "and its value}. Do not use variables.\n\n"
        + TOOL_JSON
        + "\n\nQuestion: What's the weather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# ---- mistral -----------------------------------------------------------------------------


def test_mistral_system_user() -> None:
    assert render_prompt(MISTRAL, [SYSTEM, HELLO]) == (
        "[INST] You are a helpful assistant.\n\nHello[/INST] "
    )


def test_mistral_tool_call_conversation() -> None:
    assert render_prompt(MISTRAL, [ASK, CALL, RESULT], tools=TOOLS) == (
        "[INST] What's the weather in Paris?[/INST]"
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city":"Paris"}}]</s>'
        '[TOOL_RESULTS] {"content": 22°C} [/TOOL_RESULTS] '
    )


def test_mistral_available_tools_before_last_user_turn() -> None:
    assert render_prompt(
        MISTRAL, [SYSTEM, HELLO, Message("assistant", "Hi!"), ASK], tools=TOOLS
    ) == (
        "[INST] Hello[/INST] Hi!</s>"
        f"[AVAILABLE_TOOLS] [{TOOL_JSON}][/AVAILABLE_TOOLS]"
        "[INST] You are a helpful assistant.\n\nWhat's the weather in Paris?[/INST] "
    )


@pytest.mark.parametrize("template", [QWEN25, LLAMA31, MISTRAL])
def test_templates_render_without_messages(template: GoTemplate) -> None:
    assert isinstance(render_prompt(template, []), str)
