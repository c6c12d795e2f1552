"""FROM a Hugging Face model folder (safetensors weights, config.json, tokenizer.json): it is
converted to an F16 GGUF once, kept under the store by its inputs' digests, and used as a file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelkit.build.convert import convert_cached, has_safetensors_weights, select_files
from modelkit.build.sources.base import BaseFile, FromRef, ResolvedBase
from modelkit.store import Store

# Ollama's progress events (``{"status", "digest", "total", "completed"}``), as a pull sends.
EventFn = Callable[[dict[str, Any]], None]


class HFFolderSource:
    name = "safetensors-folder"

    def __init__(self, store: Store, progress: EventFn | None = None) -> None:
        self.store = store
        self.progress = progress

    def claims(self, ref: FromRef) -> bool:
        return ref.path is not None and ref.path.is_dir() and has_safetensors_weights(ref.path)

    def resolve(self, ref: FromRef) -> ResolvedBase:
        assert ref.path is not None
        return self.resolve_folder(ref.path)

    def resolve_folder(self, folder: Path, known: Mapping[str, str] | None = None) -> ResolvedBase:
        """Convert ``folder`` (or find its conversion); ``known`` maps file keys to digests."""
        selection = select_files(folder)
        converting = self._reporter("converting model", f"converting {selection.folder.name}")
        hashing = self._reporter("hashing model files", f"hashing {selection.folder.name}")
        path, _cached = convert_cached(selection, self.store, converting, known, hashing)
        return ResolvedBase(
            description=f"safetensors folder {selection.folder} (converted to F16 GGUF)",
            files=[BaseFile("", path)],  # Ollama gives a converted layer no `from`
        )

    def _reporter(self, status: str, key: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback sending progress events for one bar, ``key``."""

        def report(done: int, total: int) -> None:
            if self.progress is not None:
                self.progress({"status": status, "digest": key, "total": total, "completed": done})

        return report
