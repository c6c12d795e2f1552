"""A Hugging Face model's ``config.json`` (and ``generation_config.json``) read into the few
typed facts the converter needs; multimodal configs contribute their ``text_config``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelkit.errors import BuildError


@dataclass(frozen=True)
class HFConfig:
    """``config.json`` as a dict plus the architecture it names."""

    architecture: str
    values: dict[str, Any]
    generation: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def int(self, key: str) -> int:
        value = self.values.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BuildError(f"config.json: {key} is missing or not an integer ({value!r})")
        return value

    def float(self, key: str, default: float | None = None) -> float:
        value = self.values.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BuildError(f"config.json: {key} is missing or not a number ({value!r})")
        return float(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BuildError(f"cannot read {path.name}: {err}") from None
    if not isinstance(value, dict):
        raise BuildError(f"{path.name} is not a JSON object")
    return value


def read_optional_json(path: Path) -> dict[str, Any]:
    """A JSON object file that may be absent (then ``{}``)."""
    return _read_json(path) if path.is_file() else {}


def load_config(folder: Path) -> HFConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise BuildError(
            f"{folder}: config.json not found; a safetensors model folder needs the "
            "Hugging Face config.json next to its weights"
        )
    values = _read_json(path)
    architectures = values.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        raise BuildError("config.json: no architectures listed; cannot tell which model it is")
    text = values.get("text_config")
    if isinstance(text, dict):
        values = {**values, **text}
    generation = read_optional_json(folder / "generation_config.json")
    return HFConfig(architecture=str(architectures[0]), values=values, generation=generation)
