"""Rich progress bars for long work: hashing, copying and quantizing GGUFs during a build, and
blob transfers during pull/push. One bar per key; rich stays quiet when not on a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # importing the registry stack only to name a type costs ~0.2 s
    from modelkit.registry import ProgressFn as RegistryProgressFn


class ByteBars:
    """Byte-count bars, created on first sight of a key and updated in place."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tasks: dict[str, TaskID] = {}

    def update(self, key: str, description: str, done: int, total: int) -> None:
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(description, total=total)
        self.progress.update(self._tasks[key], completed=done, total=total)


@contextmanager
def byte_bars(console: Console) -> Iterator[ByteBars]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield ByteBars(progress)


@contextmanager
def byte_progress(console: Console, enabled: bool = True) -> Iterator[ProgressFn]:
    """Yields a build's ``(label, done, total)`` callback that draws one bar per label
    (``copying NAME``, ``quantizing F16 model to Q4_K_M``); a total of 0 prints a line."""
    if not enabled:
        yield lambda label, done, total: None
        return
    with byte_bars(console) as bars:

        def show(label: str, done: int, total: int) -> None:
            if total:
                bars.update(label, label, done, total)
            else:
                bars.progress.console.print(label, markup=False, highlight=False)

        yield show


@contextmanager
def registry_progress(console: Console) -> Iterator[RegistryProgressFn]:
    """Yields a pull/push event callback: one bar per blob (``pulling <hex12>``), other
    statuses as lines."""
    with byte_bars(console) as bars:

        def show(event: dict[str, Any]) -> None:
            status = str(event.get("status", ""))
            digest = event.get("digest")
            if isinstance(digest, str):
                total = int(event.get("total") or 0)
                completed = int(event.get("completed") or 0)
                bars.update(digest, status, completed, total)
            elif status:
                bars.progress.console.print(status)

        yield show
