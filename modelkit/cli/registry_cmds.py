"""``modelkit pull`` / ``modelkit push``: move models between the store and a registry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from modelkit.config import Settings
from modelkit.names import ModelName
from modelkit.registry import ProgressFn, pull, push
from modelkit.registry.compat import check_pulled
from modelkit.store import Store


@contextmanager
def _progress_display(console: Console) -> Iterator[ProgressFn]:
    """One bar per blob (``pulling <hex12>``/``pushing <hex12>``); other statuses as lines."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as bars:

        def show(event: dict[str, Any]) -> None:
            status = str(event.get("status", ""))
            digest = event.get("digest")
            if isinstance(digest, str):
                total = int(event.get("total") or 0)
                completed = int(event.get("completed") or 0)
                if digest not in tasks:
                    tasks[digest] = bars.add_task(status, total=total)
                bars.update(tasks[digest], completed=completed, total=total)
            elif status:
                bars.console.print(status)

        yield show


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
    with _progress_display(_console()) as show:
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
    with _progress_display(_console()) as show:
        push(store, model, insecure=insecure, progress=show)


COMMANDS = [pull_cmd, push_cmd]
