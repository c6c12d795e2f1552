"""Prompt templates: Ollama's Go ``text/template`` engine, prompt assembly, Jinja2 chat templates.

Public API::

    GoTemplate(text)                     parse (TemplateError on bad text); .vars(), .execute(data)
    render_prompt(template, messages, *, tools=None, think=None, suffix=None, prompt=None)
    collate(messages)                    Ollama's system/merge step
    Message, ToolCall, ToolCallFunction, Tool, ToolFunction, ToolFunctionParameters,
    ToolProperty, PropertyType           chat data as templates see it (Go field names)
    JinjaTemplate(source, bos_token=, eos_token=).render(messages, tools=...)
    is_jinja_template(text)              Jinja2 (Hugging Face) vs Go (Ollama) template text

Layout: ``parser`` (grammar/gotemplate.lark → ``nodes``) → ``executor`` (with ``functions``,
``gofmt`` printing and the ``values`` model) → ``gotemplate`` (Ollama's Parse rules) →
``prompt`` (Ollama's Execute); ``jinja`` is separate.
"""

from __future__ import annotations

from modelkit.errors import TemplateError
from modelkit.template.check import template_error
from modelkit.template.gotemplate import DEFAULT_TEMPLATE_TEXT, GoTemplate
from modelkit.template.jinja import JinjaTemplate, is_jinja_template
from modelkit.template.prompt import (
    THINK_LEVELS,
    Message,
    PropertyType,
    Tool,
    ToolCall,
    ToolCallFunction,
    ToolFunction,
    ToolFunctionParameters,
    ToolProperty,
    collate,
    render_prompt,
    think_values,
)

__all__ = [
    "DEFAULT_TEMPLATE_TEXT",
    "THINK_LEVELS",
    "GoTemplate",
    "JinjaTemplate",
    "Message",
    "PropertyType",
    "TemplateError",
    "Tool",
    "ToolCall",
    "ToolCallFunction",
    "ToolFunction",
    "ToolFunctionParameters",
    "ToolProperty",
    "collate",
    "is_jinja_template",
    "render_prompt",
    "template_error",
    "think_values",
]
