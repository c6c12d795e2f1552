"""Locates the data files that ship with modelkit: the Lark grammars and the Jinja2 templates.

They live in the repo's top-level grammar/ and templates/ folders and are installed as the
data packages ``modelkit._grammar`` / ``modelkit._templates``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _read(data_package: str, folder: str, name: str) -> str:
    # Running from a source checkout imports modelkit/ straight from the repo, where the
    # data packages are not mapped; the top-level folder is the same file then.
    checkout_file = _REPO_ROOT / folder / name
    if checkout_file.is_file() and (_REPO_ROOT / "pyproject.toml").is_file():
        return checkout_file.read_text(encoding="utf-8")
    return resources.files(data_package).joinpath(name).read_text(encoding="utf-8")


def grammar_text(name: str) -> str:
    """The text of ``grammar/<name>`` (e.g. ``modelfile.lark``)."""
    return _read("modelkit._grammar", "grammar", name)


def template_text(name: str) -> str:
    """The text of ``templates/<name>``."""
    return _read("modelkit._templates", "templates", name)
