"""Checking a TEMPLATE without running a model: Go templates as Ollama parses them at create
time, Hugging Face Jinja2 templates as Jinja2 compiles them."""

from __future__ import annotations

from modelkit.errors import TemplateError
from modelkit.template.gotemplate import GoTemplate
from modelkit.template.jinja import JinjaTemplate, is_jinja_template


def template_error(text: str) -> TemplateError | None:
    """Why ``text`` is not a usable template, or None when it is."""
    try:
        if is_jinja_template(text):
            JinjaTemplate(text)
        else:
            GoTemplate(text)
    except TemplateError as err:
        return err
    return None
