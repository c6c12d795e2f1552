"""``modelkit test``: run a YAML spec of prompts and assertions against a model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from modelkit.cli.client import api_key_headers
from modelkit.cli.options import jobs_option
from modelkit.config import Settings
from modelkit.errors import ModelkitError
from modelkit.validate.reports import case_lines, tally, write_json, write_junit
from modelkit.validate.runner import Backend, HttpBackend, InProcessBackend, build_model, run_spec
from modelkit.validate.runner import select as select_cases
from modelkit.validate.spec import SpecError, load_schema, load_spec


def print_schema(ctx: click.Context) -> None:
    click.echo(json.dumps(load_schema(), indent=2))
    ctx.exit(0)


@click.command(name="test")
@click.argument("spec", default="modeltest.yaml", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", help="Test this model instead of the spec's.")
@click.option("--host", help="Run the cases against a server (e.g. http://127.0.0.1:11434).")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option("-k", "keyword", help="Only cases whose names match (and/or/not of substrings).")
@jobs_option("Cases to run at once (in process: as many parallel slots).")
@click.option(
    "--schema",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: print_schema(ctx) if value else None,
    help="Print the spec's JSON schema (for editors) and exit.",
)
@click.pass_context
def test(
    ctx: click.Context,
    spec: str,
    model_name: str | None,
    host: str | None,
    junit: str | None,
    json_path: str | None,
    keyword: str | None,
    jobs: int,
) -> None:
    """Run SPEC's cases (default modeltest.yaml) and check their assertions.

    Exits 0 when every case passes, 1 when any fails, 2 when the spec is invalid."""
    path = Path(spec)
    try:
        test_spec = load_spec(path)
    except SpecError as err:
        for line in err.lines():
            click.echo(line, err=True)
        ctx.exit(2)
    try:
        cases = select_cases(test_spec.cases, keyword)
    except ModelkitError as err:
        click.echo(f"Error: {err}", err=True)
        ctx.exit(2)
    if not cases:
        click.echo(f"no case matches -k {keyword!r}", err=True)
        ctx.exit(2)
    settings = Settings.from_env()
    if model_name:
        model = model_name
    elif test_spec.model:
        model = test_spec.model
    elif test_spec.modelfile is not None:
        model = build_model(test_spec.modelfile, settings)
    else:
        click.echo(
            f"{path}: the spec names no model: add model: or modelfile:, or give --model", err=True
        )
        ctx.exit(2)
    backend: Backend = (
        HttpBackend(host, headers=api_key_headers()) if host else InProcessBackend(settings, jobs)
    )
    started = time.perf_counter()
    try:
        results = run_spec(
            test_spec, backend, model, cases, jobs, on_result=lambda r: click.echo(case_lines(r))
        )
    finally:
        backend.close()
    click.echo(tally(results, model, time.perf_counter() - started))
    if json_path:
        write_json(Path(json_path), results, model)
    if junit:
        write_junit(Path(junit), results, model, suite=path.stem)
    ctx.exit(0 if all(r.status == "pass" for r in results) else 1)
