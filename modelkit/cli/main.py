"""The ``modelkit`` command: a thin Click shell over the packages; the one place where
domain errors become messages and exit codes (1 for errors, 2 for usage)."""

from __future__ import annotations

from typing import Any

import click

from modelkit import __version__
from modelkit.cli import (
    build_cmds,
    model_cmds,
    registry_cmds,
    run_cmds,
    serve_cmds,
    template_cmds,
    test_cmds,
)
from modelkit.errors import ModelkitError


class ModelkitGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelkitError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(1)
        except OSError as err:
            # Disk full, permissions, ...: say what and where, not a traceback.
            click.echo(f"Error: {err}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            ctx.exit(130)


@click.group(cls=ModelkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="modelkit")
def cli() -> None:
    """Build, test, ship and serve local LLMs from Ollama Modelfiles.

    Models live in an Ollama-compatible store: $OLLAMA_MODELS (default ~/.ollama/models).
    """


for module in (
    build_cmds,
    model_cmds,
    serve_cmds,
    run_cmds,
    template_cmds,
    registry_cmds,
    test_cmds,
):
    for command in module.COMMANDS:
        cli.add_command(command)
cli.add_command(model_cmds.list_models, name="ls")


def main() -> None:
    cli(prog_name="modelkit")


if __name__ == "__main__":  # pragma: no cover
    main()
