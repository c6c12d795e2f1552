"""The layers a build produces and how each text layer is serialized, byte for byte as Ollama
does, so the same Modelfile and GGUF give the same digests as ``ollama create``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from modelkit.store import (
    GGUFInfo,
    go_json_dumps,
    sha256_digest,
)

LayerStatus = Literal["inherited", "cached", "new"]


@dataclass(frozen=True)
class PlannedLayer:
    """One manifest layer as planned: where its bytes come from and whether they exist yet.

    Exactly one of ``data`` (a text layer), ``path`` (a local file to import) or neither (an
    inherited blob already in the store) is set. ``digest`` is None only for a new file that
    has not been hashed yet.
    """

    media_type: str
    source: str
    status: LayerStatus
    digest: str | None
    size: int
    from_: str | None = None
    data: bytes | None = None
    path: Path | None = None
    gguf: GGUFInfo | None = None

    def with_digest(self, digest: str, size: int) -> PlannedLayer:
        return replace(self, digest=digest, size=size)


def text_layer(media_type: str, data: bytes, source: str, exists: bool) -> PlannedLayer:
    return PlannedLayer(
        media_type=media_type,
        source=source,
        status="cached" if exists else "new",
        digest=sha256_digest(data),
        size=len(data),
        data=data,
    )


def params_bytes(params: dict[str, Any]) -> bytes:
    """A params layer: a Go JSON map (sorted keys, HTML-escaped) plus a newline."""
    return go_json_dumps(params, newline=True, sort_keys=True)


def messages_bytes(messages: list[tuple[str, str]]) -> bytes:
    return go_json_dumps([{"role": r, "content": c} for r, c in messages], newline=True)
