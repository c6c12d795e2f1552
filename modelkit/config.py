"""Settings from Ollama's environment variables (``OLLAMA_*``), read once and passed down.

Parsing follows Ollama's envconfig: surrounding whitespace and quotes are stripped, booleans
use Go's ParseBool and an unparsable non-empty value counts as true.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def env_value(environ: Mapping[str, str], key: str) -> str:
    """An env var as Ollama reads it: trimmed of whitespace, then of quotes."""
    return environ.get(key, "").strip().strip("\"'")


def env_bool(environ: Mapping[str, str], key: str) -> bool:
    value = env_value(environ, key)
    # Ollama treats any non-empty value that is not a Go "false" (even one ParseBool
    # rejects) as true.
    return bool(value) and value not in _GO_FALSE


@dataclass(frozen=True)
class Settings:
    """The OLLAMA_* settings modelkit honours so far."""

    models: Path
    noprune: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        models = env_value(env, "OLLAMA_MODELS")
        return cls(
            models=Path(models).expanduser() if models else Path.home() / ".ollama" / "models",
            noprune=env_bool(env, "OLLAMA_NOPRUNE"),
        )
