"""Ollama's path expansion for FROM/ADAPTER/DRAFT: ``~``, ``~user``, absolute, or relative
to the Modelfile's folder."""

from __future__ import annotations

import pwd
from pathlib import Path

from modelkit.errors import BuildError


def expand_path(raw: str, base_dir: Path) -> Path:
    """Expand ``raw`` as Ollama does; the result is absolute but not resolved."""
    if raw.startswith(("/", "\\")):
        return Path(raw).absolute()
    if raw == "~" or raw.startswith("~/"):
        return Path.home() / raw[2:]
    if raw.startswith("~"):
        user, _, rest = raw[1:].partition("/")
        try:
            home = Path(pwd.getpwnam(user).pw_dir)
        except KeyError:
            raise BuildError(f"failed to find user '{user}'") from None
        return home / rest
    return (base_dir / raw).absolute()


def existing_path(raw: str, base_dir: Path) -> Path | None:
    """The expanded path when something exists there, else None (FROM is then a name)."""
    try:
        path = expand_path(raw, base_dir)
    except BuildError:
        return None
    return path if path.exists() else None
