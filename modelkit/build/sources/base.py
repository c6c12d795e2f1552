"""The one small interface every FROM source implements, and what a resolved base looks like.

A source turns a FROM value into base layers; adding a new kind of source is one new module
that implements ``Source`` and is listed in ``sources/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modelkit.store import ModelConfig, StoredManifest


@dataclass(frozen=True)
class FromRef:
    """A FROM value with the path it expands to (None when it names no existing path)."""

    raw: str
    path: Path | None


@dataclass(frozen=True)
class BaseFile:
    """A local file that becomes a layer; ``key`` is Ollama's name for it (its ``from``)."""

    key: str
    path: Path


@dataclass
class ResolvedBase:
    """What a FROM resolved to: local files to import, or a stored model to inherit from."""

    description: str
    files: list[BaseFile] = field(default_factory=list)
    parent: StoredManifest | None = None
    parent_name: str | None = None
    parent_config: ModelConfig | None = None


class Source(Protocol):
    """Resolves one kind of FROM value."""

    name: str

    def claims(self, ref: FromRef) -> bool:
        """Whether this source handles ``ref`` (checked in the order sources are listed)."""
        ...

    def resolve(self, ref: FromRef) -> ResolvedBase: ...
