"""Test specs for ``modelkit test``: a YAML file of prompts and assertions, checked against
the JSON schema shipped in ``modelkit/validate/schema/testspec.schema.json``.

Errors carry the line of the offending node (``SPEC:line: message``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]

DEFAULT_OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42}
ASSERTION_KINDS = (
    "contains",
    "not_contains",
    "regex",
    "equals",
    "json_schema",
    "max_tokens",
    "stops_with",
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class SpecProblem:
    line: int
    message: str


class SpecError(Exception):
    """The spec cannot be read or does not match the schema."""

    def __init__(self, path: Path, problems: list[SpecProblem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}:{p.line}: {p.message}" for p in self.problems]


@dataclass(frozen=True)
class Assertion:
    kind: str
    value: Any

    def describe(self) -> str:
        return f"{self.kind}: {json.dumps(self.value)}"


@dataclass
class Case:
    name: str
    asserts: list[Assertion]
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | None = None
    format: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TestSpec:
    path: Path
    cases: list[Case]
    model: str | None = None
    modelfile: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


def load_schema() -> dict[str, Any]:
    text = resources.files("modelkit.validate").joinpath("schema/testspec.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return schema


def _line_of(root: Any, path: list[str | int]) -> int:
    """The 1-based line of the YAML node at ``path`` (or of its deepest existing parent)."""
    node = root
    for key in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    child = v
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1 if node is not None else 1


def _error_message(error: Any) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "oneOf":
        # Our oneOf branches are all {"required": [one key]}: say which keys.
        keys = [k for branch in error.validator_value for k in branch.get("required", [])]
        message = f"needs exactly one of: {', '.join(keys)}"
        return f"{where}: {message}" if where else message
    return f"{where}: {error.message}" if where else str(error.message)


def expand(text: str, values: dict[str, Any]) -> str:
    """Replace ``{name}`` placeholders whose name is in ``values``; leave other braces."""
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text
    )


def _expand_value(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return expand(value, values)
    return value


def _case(raw: dict[str, Any], values: dict[str, Any] | None, name: str) -> Case:
    vals = values or {}
    asserts = []
    for item in raw.get("assert", []):
        ((kind, value),) = item.items()
        asserts.append(Assertion(kind, _expand_value(value, vals)))
    messages = raw.get("messages")
    if messages is not None:
        messages = [{**m, "content": expand(str(m.get("content", "")), vals)} for m in messages]
    prompt = raw.get("prompt")
    system = raw.get("system")
    return Case(
        name=name,
        asserts=asserts,
        prompt=expand(prompt, vals) if prompt is not None else None,
        messages=messages,
        system=expand(system, vals) if system is not None else None,
        format=raw.get("format"),
        options=dict(raw.get("options") or {}),
    )


def parse_spec(text: str, path: Path) -> TestSpec:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError(path, [SpecProblem(line, f"invalid YAML: {problem}")]) from err
    if data is None:
        raise SpecError(path, [SpecProblem(1, "the spec is empty")])
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    problems = [
        SpecProblem(_line_of(root, list(e.absolute_path)), _error_message(e)) for e in errors
    ]
    for index, raw in enumerate(data.get("cases", []) if not problems else []):
        for position, item in enumerate(raw.get("assert", [])):
            if "regex" in item:
                try:
                    re.compile(item["regex"])
                except re.error as err:
                    line = _line_of(root, ["cases", index, "assert", position, "regex"])
                    problems.append(SpecProblem(line, f"invalid regex {item['regex']!r}: {err}"))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise SpecError(path, problems)
    cases: list[Case] = []
    for raw in data["cases"]:
        params = raw.get("parametrize")
        if params:
            for i, values in enumerate(params["vars"]):
                cases.append(_case(raw, values, f"{raw['name']}[{i}]"))
        else:
            cases.append(_case(raw, None, raw["name"]))
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(path, [SpecProblem(1, f"duplicate case name: {n}") for n in duplicates])
    modelfile = data.get("modelfile")
    return TestSpec(
        path=path,
        cases=cases,
        model=data.get("model"),
        modelfile=(path.parent / modelfile) if modelfile else None,
        options={**DEFAULT_OPTIONS, **(data.get("options") or {})},
    )


def load_spec(path: Path) -> TestSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(path, [SpecProblem(1, f"cannot read the spec: {err.strerror}")]) from err
    return parse_spec(text, path)
