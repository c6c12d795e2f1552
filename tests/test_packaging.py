"""The package list in pyproject.toml names every Python package under modelkit/ (a missing
one installs fine in editable mode and breaks every wheel install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "modelkit").rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    # Data packages (grammar/, templates/) are listed too, mapped by package-dir.
    assert {"modelkit._grammar", "modelkit._templates"} <= listed
