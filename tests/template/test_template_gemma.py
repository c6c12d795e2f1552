"""Gemma's turn format (Ollama's gemma3 template shape): system folded into the user turn,
``model`` as the assistant role, and the open model turn at the end."""

from __future__ import annotations

from modelkit.template import GoTemplate, render_prompt

GEMMA3 = GoTemplate(
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user\n'
    "{{ .Content }}<end_of_turn>\n"
    "{{ if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
    "{{ .Content }}{{ if not $last }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- end }}"
)


def test_gemma_single_user_turn() -> None:
    out = render_prompt(GEMMA3, [{"role": "user", "content": "Hello"}])
    assert out == "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_conversation() -> None:
    out = render_prompt(
        GEMMA3,
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
    )
    assert out == (
        "<start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_trailing_assistant_is_a_prefill() -> None:
    out = render_prompt(
        GEMMA3, [{"role": "user", "content": "Count"}, {"role": "assistant", "content": "1, 2,"}]
    )
    assert out == "<start_of_turn>user\nCount<end_of_turn>\n<start_of_turn>model\n1, 2,"
