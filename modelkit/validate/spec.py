"""Test specs for ``modelkit test``: a YAML file of prompts and assertions, checked against
the JSON schema shipped in ``modelkit/validate/schema/testspec.schema.json``.

Errors carry the line of the offending node (``SPEC:line: message``)."""

from __future__ import annotations

import base64
import csv
import io
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
    "tool_call",
    "similar",
    "max_ttft_ms",
    "max_total_ms",
    "min_tokens_per_s",
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
    grammar: str | None = None
    """Raw GBNF the answer must follow (a modelkit extension; see README)."""
    options: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    images: list[str] = field(default_factory=list)
    """Base64 images, sent with the user's (last) message or the prompt."""


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
    if error.validator == "not" and not where:
        return "give model or modelfile, not both"
    return f"{where}: {error.message}" if where else str(error.message)


def expand(text: str, values: dict[str, Any]) -> str:
    """Replace ``{name}`` placeholders whose name is in ``values``; leave other braces."""
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text
    )


def _expand_value(value: Any, values: dict[str, Any]) -> Any:
    """Placeholders expanded in every string of ``value`` (a tool_call's argument schema may
    say ``const: "{city}"``)."""
    if isinstance(value, str):
        return expand(value, values)
    if isinstance(value, list):
        return [_expand_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _expand_value(v, values) for k, v in value.items()}
    return value


def _case(raw: dict[str, Any], values: dict[str, Any] | None, name: str, images: list[str]) -> Case:
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
        grammar=raw.get("grammar"),
        options=dict(raw.get("options") or {}),
        tools=raw.get("tools"),
        images=images,
    )


def _read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a parametrize table: CSV with a header row, JSON Lines, or a JSON/YAML list
    of objects. Raises ValueError with what is wrong."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    rows: Any
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif suffix in (".json", ".yaml", ".yml"):
        rows = yaml.safe_load(text)
    else:
        raise ValueError("a table is .csv, .jsonl, .json, .yaml or .yml")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("a table must hold at least one row, each an object of named values")
    return rows


def _case_name(base: str, index: int, values: dict[str, Any]) -> str:
    ident = values.get("id")
    return f"{base}[{ident}]" if ident is not None else f"{base}[{index}]"


def _load_image(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


@dataclass
class _Reader:
    """Turns validated spec data into cases; collects problems with their YAML lines."""

    path: Path
    root: Any
    problems: list[SpecProblem] = field(default_factory=list)

    def problem(self, where: list[str | int], message: str) -> None:
        self.problems.append(SpecProblem(_line_of(self.root, where), message))

    def check_regexes(self, index: int, case: Case) -> None:
        """Each regex as the case runs it (placeholders filled in), compiled now."""
        for position, assertion in enumerate(case.asserts):
            if assertion.kind != "regex":
                continue
            try:
                re.compile(assertion.value)
            except re.error as err:
                where: list[str | int] = ["cases", index, "assert", position, "regex"]
                self.problem(where, f"{case.name}: invalid regex {assertion.value!r}: {err}")

    def table(self, index: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        if "vars" in params:
            return list(params["vars"])
        table = self.path.parent / params["file"]
        try:
            return _read_table(table)
        except (OSError, ValueError, yaml.YAMLError) as err:
            reason = err.strerror if isinstance(err, OSError) else str(err)
            self.problem(["cases", index, "parametrize", "file"], f"cannot read {table}: {reason}")
            return []

    def images(self, index: int, raw: dict[str, Any]) -> list[str]:
        loaded = []
        for position, name in enumerate(raw.get("images", [])):
            image = self.path.parent / name
            try:
                loaded.append(_load_image(image))
            except OSError as err:
                where: list[str | int] = ["cases", index, "images", position]
                self.problem(where, f"cannot read image {image}: {err.strerror}")
        return loaded

    def cases(self, data: dict[str, Any]) -> list[Case]:
        cases: list[Case] = []
        for index, raw in enumerate(data["cases"]):
            images = self.images(index, raw)
            params = raw.get("parametrize")
            rows = self.table(index, params) if params else [None]
            for i, values in enumerate(rows):
                name = _case_name(raw["name"], i, values) if values is not None else raw["name"]
                case = _case(raw, values, name, images)
                self.check_regexes(index, case)
                cases.append(case)
        names = [c.name for c in cases]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            self.problem([], f"duplicate case name: {duplicate}")
        return cases


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
    if problems:
        raise SpecError(path, sorted(problems, key=lambda p: p.line))
    reader = _Reader(path, root)
    cases = reader.cases(data)
    if reader.problems:
        raise SpecError(path, sorted(reader.problems, key=lambda p: p.line))
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
