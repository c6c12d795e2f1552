"""NDJSON streaming as Ollama does it: one compact JSON object per line, flushed per object."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any


def ndjson_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def ndjson_lines(objects: Iterable[dict[str, Any]]) -> AsyncIterator[bytes]:
    for obj in objects:
        yield ndjson_line(obj)
