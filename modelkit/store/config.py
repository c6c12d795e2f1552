"""The config blob a manifest points at (Ollama's ``model.ConfigV2``, reference §3.4)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelkit.errors import StoreError
from modelkit.store.ggufinfo import GGUFInfo, human_parameter_count
from modelkit.store.gojson import go_json_dumps

__all__ = ["ModelConfig"]


def _opt_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StoreError(f"invalid config blob: {key} is not a string")
    return value


def _opt_int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise StoreError(f"invalid config blob: {key} is not an integer")
    return int(value)


def _opt_str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StoreError(f"invalid config blob: {key} is not a list of strings")
    return list(value)


@dataclass
class ModelConfig:
    """Ollama's config blob; fields in the order Ollama writes them.

    ``model_families`` is ``None`` when Go's slice would be nil (encoded ``null``); the
    fields marked optional are omitted when empty, like Go's ``omitempty``. ``draft`` is
    kept as the JSON object it was read as (``model_format``, ``architecture``,
    ``tensor_prefix``, ``config``).
    """

    model_format: str = ""
    model_family: str = ""
    model_families: list[str] | None = None
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: list[str] | None = None
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: dict[str, Any] | None = None
    architecture: str = "amd64"
    os: str = "linux"
    # No "rootfs": current Ollama stopped writing it (nothing read it); readers ignore it.

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "model_format": self.model_format,
            "model_family": self.model_family,
            "model_families": self.model_families,
            "model_type": self.model_type,
            "file_type": self.file_type,
        }
        optional: tuple[tuple[str, Any], ...] = (
            ("renderer", self.renderer),
            ("parser", self.parser),
            ("requires", self.requires),
            ("remote_host", self.remote_host),
            ("remote_model", self.remote_model),
            ("capabilities", self.capabilities),
            ("context_length", self.context_length),
            ("embedding_length", self.embedding_length),
            ("base_name", self.base_name),
            ("draft", self.draft),
        )
        for key, value in optional:
            if value:  # omitempty: "", 0, None, [] and {} are left out
                obj[key] = value
        obj["architecture"] = self.architecture
        obj["os"] = self.os
        return obj

    def to_bytes(self) -> bytes:
        """The config blob bytes: Go JSON plus ``\\n`` (Ollama's json.Encoder)."""
        return go_json_dumps(self.to_json_obj(), newline=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ModelConfig:
        """Parse a config blob; unknown keys (``rootfs``, ...) are ignored."""
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"invalid config blob: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise StoreError("invalid config blob: not a JSON object")
        draft = obj.get("draft")
        if draft is not None and not isinstance(draft, dict):
            raise StoreError("invalid config blob: draft is not an object")
        return cls(
            model_format=_opt_str(obj, "model_format"),
            model_family=_opt_str(obj, "model_family"),
            model_families=_opt_str_list(obj, "model_families"),
            model_type=_opt_str(obj, "model_type"),
            file_type=_opt_str(obj, "file_type"),
            renderer=_opt_str(obj, "renderer"),
            parser=_opt_str(obj, "parser"),
            requires=_opt_str(obj, "requires"),
            remote_host=_opt_str(obj, "remote_host"),
            remote_model=_opt_str(obj, "remote_model"),
            capabilities=_opt_str_list(obj, "capabilities"),
            context_length=_opt_int(obj, "context_length"),
            embedding_length=_opt_int(obj, "embedding_length"),
            base_name=_opt_str(obj, "base_name"),
            draft=draft or None,
            architecture=_opt_str(obj, "architecture"),
            os=_opt_str(obj, "os"),
        )

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelConfig:
        """The config Ollama's create writes for one GGUF model layer.

        ``context_length``/``embedding_length`` stay unset: create does not write them for
        GGUF files (they are only for remote stubs), and digests must match Ollama's.
        """
        return cls(
            model_format="gguf",
            model_family=info.architecture,
            model_families=[info.architecture],
            model_type=human_parameter_count(info.parameter_count),
            file_type=info.file_type,
        )
