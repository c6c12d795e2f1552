"""The assertions of a test spec: each one checks a model's answer and explains a failure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema  # type: ignore[import-untyped]

from modelkit.validate.spec import Assertion

_SHOW = 200


@dataclass(frozen=True)
class Output:
    """What a model answered to one case."""

    content: str
    done_reason: str
    eval_count: int


@dataclass(frozen=True)
class Failure:
    assertion: str
    message: str


def _show(text: str) -> str:
    shown = text if len(text) <= _SHOW else text[:_SHOW] + "…"
    return json.dumps(shown, ensure_ascii=False)


def check(assertion: Assertion, output: Output) -> Failure | None:
    """None when ``output`` satisfies ``assertion``, else why not."""
    kind, value, text = assertion.kind, assertion.value, output.content
    problem: str | None = None
    if kind == "contains":
        if value not in text:
            problem = f"output does not contain {_show(value)}; output: {_show(text)}"
    elif kind == "not_contains":
        if value in text:
            problem = f"output contains {_show(value)}; output: {_show(text)}"
    elif kind == "regex":
        if re.search(value, text) is None:
            problem = f"output does not match /{value}/; output: {_show(text)}"
    elif kind == "equals":
        if text.strip() != value.strip():
            problem = f"output is not {_show(value)}; output: {_show(text)}"
    elif kind == "json_schema":
        try:
            document = json.loads(text)
        except ValueError as err:
            problem = f"output is not JSON ({err}); output: {_show(text)}"
        else:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(value).iter_errors(document)
            )
            if error is not None:
                problem = (
                    f"output does not match the schema: {error.message}; output: {_show(text)}"
                )
    elif kind == "max_tokens":
        if output.eval_count > value:
            problem = (
                f"output has {output.eval_count} tokens, more than {value}; output: {_show(text)}"
            )
    elif kind == "stops_with":
        if output.done_reason != value:
            problem = (
                f"generation stopped with {output.done_reason!r}, not {value!r};"
                f" output: {_show(text)}"
            )
    else:  # pragma: no cover - the schema allows no other kind
        problem = f"unknown assertion {kind!r}"
    return Failure(assertion.describe(), problem) if problem else None
