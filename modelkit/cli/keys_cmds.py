"""``modelkit keys``: API keys for a server others can reach (``MODELKIT_API_KEYS_FILE``)."""

from __future__ import annotations

from pathlib import Path

import click

from modelkit.config import Settings
from modelkit.errors import ModelkitError

_FILE_HELP = "the key file (default: MODELKIT_API_KEYS_FILE)"


def _key_file(path: Path | None) -> Path:
    found = path or Settings.from_env().api_keys_file
    if found is None:
        raise ModelkitError("no key file: pass --file PATH or set MODELKIT_API_KEYS_FILE")
    return found


@click.group()
def keys() -> None:
    """Manage the API keys a server accepts (lines of NAME SHA256 SCOPE: no secrets)."""


@keys.command("add")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["inference", "admin"]),
    default="inference",
    show_default=True,
    help="inference: generate, chat, embed, /v1, show, tags, ps; admin: everything",
)
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), help=_FILE_HELP)
def add(name: str, scope: str, path: Path | None) -> None:
    """Make a key named NAME, print it (once: only its hash is kept) and add it to the file.
    A running server reads the file at start."""
    from modelkit.server.auth import add_key_line

    target = _key_file(path)
    key = add_key_line(target, name, scope)
    click.echo(key)
    click.echo(f"added {name} ({scope}) to {target}; the key is not shown again", err=True)


@keys.command("list")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), help=_FILE_HELP)
def list_keys(path: Path | None) -> None:
    """The keys' names and scopes."""
    from modelkit.server.auth import KeyRing

    for key in KeyRing.from_settings("", _key_file(path)).keys:
        click.echo(f"{key.name}\t{key.scope}")
