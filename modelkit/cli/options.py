"""Click options more than one command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def jobs_option(help_text: str) -> Callable[[Any], Any]:
    """``-j/--jobs N``: how many test cases run at once."""
    return click.option(
        "-j", "--jobs", default=1, show_default=True, type=click.IntRange(min=1), help=help_text
    )
