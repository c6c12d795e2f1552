"""The ``modelkit`` command: a thin Click shell over the packages; the one place where
domain errors become messages and exit codes (1 for errors, 2 for usage)."""

from __future__ import annotations

import importlib
from typing import Any

import click

from modelkit import OLLAMA_API_VERSION, __version__
from modelkit.errors import ModelkitError

# Each command's module is imported only when that command runs (or --help lists it): a
# `modelkit build` need not pay for the HTTP, registry and runtime stacks at start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build_cmds", "build"),
    "create": ("build_cmds", "create"),
    "lint": ("build_cmds", "lint"),
    "list": ("model_cmds", "list_models"),
    "ls": ("model_cmds", "list_models"),
    "show": ("model_cmds", "show"),
    "cp": ("model_cmds", "cp"),
    "rm": ("model_cmds", "rm"),
    "prune": ("model_cmds", "prune"),
    "serve": ("serve_cmds", "serve"),
    "healthcheck": ("health_cmds", "healthcheck"),
    "keys": ("keys_cmds", "keys"),
    "run": ("run_cmds", "run"),
    "ps": ("run_cmds", "ps"),
    "stop": ("run_cmds", "stop"),
    "template": ("template_cmds", "template"),
    "pull": ("registry_cmds", "pull_cmd"),
    "push": ("registry_cmds", "push_cmd"),
    "test": ("test_cmds", "test"),
    "image": ("image_cmds", "image"),
    "runtime-image": ("runtime_image_cmds", "runtime_image"),
    "deploy": ("deploy_cmds", "deploy"),
}


class ModelkitGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name]
        module = importlib.import_module(f"modelkit.cli.{module_name}")
        command: click.Command = getattr(module, attr)
        return command

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
@click.version_option(
    __version__,
    "-v",
    "--version",
    prog_name="modelkit",
    message=f"%(prog)s %(version)s (Ollama API {OLLAMA_API_VERSION})",
)
def cli() -> None:
    """Build, test, ship and serve local LLMs from Ollama Modelfiles.

    Models live in an Ollama-compatible store: $OLLAMA_MODELS (default ~/.ollama/models).
    """


def main() -> None:
    cli(prog_name="modelkit")


if __name__ == "__main__":  # pragma: no cover
    main()
