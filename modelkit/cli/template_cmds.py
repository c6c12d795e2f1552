"""``modelkit template render``: print the exact prompt a model would be given, so templates
can be debugged without running a model (Ollama has no such preview)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelkit.config import Settings
from modelkit.errors import ModelkitError
from modelkit.names import ModelName
from modelkit.runtime.prompting import ChatTemplate, chat_messages
from modelkit.store import Store, view_model


def _json_file(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise click.ClickException(f"cannot read {what} file {path}: {err.strerror}") from None
    except ValueError as err:
        raise click.ClickException(f"{path}: not valid JSON: {err}") from None


@click.group()
def template() -> None:
    """Work with prompt templates."""


@template.command()
@click.option("-m", "--model", help="Use this model's TEMPLATE, SYSTEM and MESSAGEs.")
@click.option(
    "--template",
    "template_file",
    type=click.Path(dir_okay=False),
    help="A template file (Go text/template or Jinja2).",
)
@click.option(
    "--messages",
    "messages_file",
    type=click.Path(dir_okay=False),
    required=True,
    help='A JSON list of messages: [{"role": "user", "content": "..."}].',
)
@click.option("--system", help="A system message (overrides the model's SYSTEM).")
@click.option(
    "--tools",
    "tools_file",
    type=click.Path(dir_okay=False),
    help="A JSON list of tools (Ollama/OpenAI function definitions).",
)
@click.option("--think/--no-think", default=None, help="Set .Think for thinking templates.")
def render(
    model: str | None,
    template_file: str | None,
    messages_file: str,
    system: str | None,
    tools_file: str | None,
    think: bool | None,
) -> None:
    """Print the prompt that MESSAGES would become."""
    if (model is None) == (template_file is None):
        raise click.UsageError("give exactly one of -m/--model and --template")
    messages = _json_file(messages_file, "messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise click.ClickException(f"{messages_file}: expected a JSON list of message objects")
    tools = _json_file(tools_file, "tools")
    if model is not None:
        store = Store(Settings.from_env().models)
        view = view_model(store, ModelName.parse(model))
        chat_template = ChatTemplate.for_stored_model(store, view)
        messages = chat_messages(view, messages, system)
    else:
        assert template_file is not None
        chat_template = ChatTemplate.parse(Path(template_file).read_text(encoding="utf-8"))
        if system:
            messages = [{"role": "system", "content": system}, *messages]
    try:
        click.echo(chat_template.render(messages, tools=tools, think=think), nl=False)
    except ModelkitError as err:
        raise click.ClickException(str(err)) from None
