"""Rich progress bars for long work (hashing and copying GGUFs); silent when not a terminal
unless asked, so CI logs stay readable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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

from modelkit.build import ProgressFn


@contextmanager
def byte_progress(console: Console, enabled: bool = True) -> Iterator[ProgressFn]:
    """Yields a ``(label, done, total)`` callback that draws one bar per label."""
    if not enabled:
        yield lambda label, done, total: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as progress:

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"copying {label}", total=total)
            progress.update(tasks[label], completed=done, total=total)

        yield update
