"""``modelkit pull`` / ``modelkit push``: move models between the store and a registry."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from modelkit.cli.progress import registry_progress
from modelkit.config import Settings
from modelkit.names import ModelName
from modelkit.registry import pull, push
from modelkit.registry.compat import check_pulled
from modelkit.store import Store


def _console() -> Console:
    return Console(file=sys.stderr)


@click.command("pull")
@click.argument("name")
@click.option("--insecure", is_flag=True, help="Use plain HTTP for a non-loopback registry.")
def pull_cmd(name: str, insecure: bool) -> None:
    """Pull a model from a registry into the store."""
    settings = Settings.from_env()
    store = Store(settings.models)
    model = ModelName.parse(name)
    with registry_progress(_console()) as show:
        stored = pull(store, model, insecure=insecure, progress=show, prune=not settings.noprune)
    # A model this llama.cpp cannot load is caught now, not at its first request.
    check_pulled(store, stored)


@click.command("push")
@click.argument("name")
@click.option("--insecure", is_flag=True, help="Use plain HTTP for a non-loopback registry.")
def push_cmd(name: str, insecure: bool) -> None:
    """Push a model from the store to its registry (the name's host)."""
    store = Store(Settings.from_env().models)
    model = ModelName.parse(name)
    with registry_progress(_console()) as show:
        push(store, model, insecure=insecure, progress=show)
