"""The lint rules: ids, severities, descriptions, and the checks that implement them.

Every check takes a parsed (unvalidated) :class:`Modelfile` plus a :class:`LintContext` and
returns :class:`LintDiagnostic` values, each carrying its rule id and a fix hint.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelkit.errors import StoreError, TemplateError
from modelkit.modelfile.ast import (
    Diagnostic,
    From,
    Instruction,
    License,
    Message,
    Modelfile,
    Parameter,
    Position,
    Requires,
    Severity,
    Template,
)
from modelkit.modelfile.params import (
    DEPRECATED_PARAMETERS,
    PARAMETER_TYPES,
    ParameterError,
    parse_parameter_value,
)
from modelkit.modelfile.parser import REQUIRES_NOT_SEMVER, is_valid_requires
from modelkit.template import GoTemplate, is_jinja_template, template_error

if TYPE_CHECKING:
    from modelkit.store import GGUFInfo

__all__ = [
    "CHAT_FORMATS",
    "KNOWN_TEMPLATE_FIELDS",
    "RULES",
    "TEMPLATE_FIELDS",
    "ChatFormat",
    "LintContext",
    "LintDiagnostic",
    "Rule",
    "chat_format",
    "run_rules",
]


@dataclass(frozen=True)
class LintDiagnostic(Diagnostic):
    """A :class:`Diagnostic` with a fix hint (``rule`` is an ``MKxxx`` id)."""

    hint: str = ""


@dataclass(frozen=True)
class Rule:
    """One lint rule: its id, default severity, a one-line description and help text."""

    id: str
    name: str
    severity: Severity
    short: str
    help: str


RULES: Final[dict[str, Rule]] = {
    r.id: r
    for r in (
        Rule(
            "MK000",
            "syntax-error",
            "error",
            "The Modelfile does not parse",
            "Fix the syntax error; nothing else is checked until the Modelfile parses.",
        ),
        Rule(
            "MK001",
            "unknown-parameter",
            "error",
            "Unknown PARAMETER name",
            "Ollama rejects PARAMETER names it does not know; use one of: "
            + ", ".join(sorted(PARAMETER_TYPES))
            + ".",
        ),
        Rule(
            "MK002",
            "parameter-type",
            "error",
            "PARAMETER value of the wrong type",
            "Ollama types each PARAMETER value (int, float, bool or string) and rejects the "
            "Modelfile when the value does not parse as that type.",
        ),
        Rule(
            "MK003",
            "duplicate-parameter",
            "warning",
            "Single-valued PARAMETER set more than once",
            "Only the last value of a repeated single-valued PARAMETER is used; remove the "
            "others (only 'stop' accumulates).",
        ),
        Rule(
            "MK004",
            "deprecated-parameter",
            "warning",
            "Deprecated PARAMETER",
            "Ollama parses deprecated parameters but ignores them; remove the line.",
        ),
        Rule(
            "MK005",
            "requires-semver",
            "error",
            "REQUIRES is not a semantic version",
            "REQUIRES takes an Ollama version such as 0.14.0.",
        ),
        Rule(
            "MK010",
            "template-syntax",
            "error",
            "TEMPLATE syntax error",
            "The TEMPLATE does not parse as a Go text/template (or Jinja2) template.",
        ),
        Rule(
            "MK011",
            "template-unknown-variable",
            "warning",
            "TEMPLATE uses a field Ollama never sets",
            "Ollama sets .System, .Prompt, .Response, .Messages, .Tools, .Suffix, .Think, "
            ".ThinkLevel and .IsThinkSet (plus message and tool fields); other fields render "
            "as nothing.",
        ),
        Rule(
            "MK012",
            "template-no-prompt",
            "error",
            "TEMPLATE never renders .Prompt or .Messages",
            "A template that renders neither .Prompt nor .Messages drops the user's input "
            "(reranker templates, which render .Query/.Document, are exempt).",
        ),
        Rule(
            "MK013",
            "template-missing-stop",
            "warning",
            "No PARAMETER stop for the template's chat format",
            "A template in a known chat format (ChatML, Llama 3, Gemma, Phi-3, Command R, "
            "Zephyr, Mistral/Llama 2 [INST]) ends each turn with a marker the model must stop "
            "at; without a PARAMETER stop for it, a reply can run on into an invented next "
            "turn. The template is the Modelfile's TEMPLATE or, when there is none, the "
            "tokenizer.chat_template of a GGUF file named by FROM. Only this Modelfile's "
            "PARAMETER stop lines count: stops a FROM model in the store already sets are not "
            "looked up.",
        ),
        Rule(
            "MK020",
            "from-missing-path",
            "error",
            "FROM path does not exist",
            "FROM paths are resolved against the Modelfile's folder; a path that does not "
            "exist fails the build.",
        ),
        Rule(
            "MK030",
            "message-sequence",
            "warning",
            "MESSAGE sequence that cannot occur in a chat",
            "MESSAGE history should alternate user and assistant turns, starting with user "
            "(after any system messages).",
        ),
        Rule(
            "MK040",
            "missing-license",
            "warning",
            "No LICENSE in a Modelfile meant for publishing",
            "Add a LICENSE instruction before pushing the model to a registry.",
        ),
        Rule(
            "MK050",
            "num-ctx-too-large",
            "warning",
            "num_ctx larger than the model's trained context",
            "A context window beyond the model's trained context_length degrades output; "
            "lower num_ctx.",
        ),
    )
}
"""Every rule, by id."""

TEMPLATE_FIELDS: Final[tuple[str, ...]] = (
    # top-level values
    "System",
    "Prompt",
    "Response",
    "Messages",
    "Tools",
    "Suffix",
    "Think",
    "ThinkLevel",
    "IsThinkSet",
    # message fields
    "Role",
    "Content",
    "Thinking",
    "Images",
    "ToolCalls",
    "ToolName",
    "ToolCallID",
    # tool and tool call fields
    "Function",
    "Name",
    "Description",
    "Parameters",
    "Properties",
    "Required",
    "Type",
    "Items",
    "Enum",
    "Arguments",
    "Index",
    "ID",
    "Defs",
    "AnyOf",
    # reranker templates (Ollama's bge-reranker / qwen-reranker)
    "Query",
    "Document",
)
"""The fields Ollama's template data can have, as Go spells them."""

_CANONICAL_FIELDS: Final[dict[str, str]] = {name.lower(): name for name in TEMPLATE_FIELDS}

KNOWN_TEMPLATE_FIELDS: Final[frozenset[str]] = frozenset(_CANONICAL_FIELDS)
"""Lower-cased field names Ollama's template data can have."""


@dataclass(frozen=True)
class LintContext:
    """What the checks need besides the Modelfile: its source lines, folder and options."""

    lines: tuple[str, ...]
    base_dir: Path
    publish: bool = False
    gguf_headers: dict[Path, GGUFInfo | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    """FROM GGUF headers already read (``None``: not a readable GGUF), shared by the checks."""


def _diag(rule: str, where: Position, message: str, hint: str) -> LintDiagnostic:
    return LintDiagnostic(
        max(where.line, 1), max(where.col, 1), RULES[rule].severity, message, rule, hint
    )


def _first(*positions: Position) -> Position:
    for pos in positions:
        if pos.line > 0:
            return pos
    return Position(1, 1)


# -- parameters ---------------------------------------------------------------------------

_TYPE_HINTS: Final[dict[str, str]] = {
    "int": "digits with an optional sign, no spaces, underscores or decimal point",
    "float": "a plain number such as 0.7 or 1e-3; NaN and Inf are not allowed",
    "bool": "one of true, false, 1, 0, t, f",
    "list": "any text",
}


def check_parameters(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK001 unknown names, MK002 bad values, MK003 duplicates, MK004 deprecated names."""
    found: list[LintDiagnostic] = []
    seen: dict[str, Parameter] = {}
    for inst in mf.of_type(Parameter):
        name_at = _first(inst.name_pos, inst.pos)
        if inst.name in DEPRECATED_PARAMETERS:
            found.append(
                _diag(
                    "MK004",
                    name_at,
                    f"parameter {inst.name} is deprecated",
                    "remove this line; Ollama ignores it",
                )
            )
            continue
        kind = PARAMETER_TYPES.get(inst.name)
        if kind is None:
            close = difflib.get_close_matches(inst.name.lower(), PARAMETER_TYPES, n=1, cutoff=0.75)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "known parameters: " + ", ".join(sorted(PARAMETER_TYPES))
            )
            found.append(_diag("MK001", name_at, f"unknown parameter '{inst.name}'", hint))
            continue
        try:
            parse_parameter_value(inst.name, inst.value)
        except ParameterError as err:
            where = _first(inst.value_pos, inst.pos)
            found.append(_diag("MK002", where, err.message, _TYPE_HINTS[kind]))
        if kind == "list":
            continue
        previous = seen.get(inst.name)
        if previous is not None:
            found.append(
                _diag(
                    "MK003",
                    name_at,
                    f"parameter {inst.name} is already set on line {previous.pos.line}; "
                    "the last one wins",
                    "remove the earlier line"
                    if previous.value != inst.value
                    else "remove one of the identical lines",
                )
            )
        seen[inst.name] = inst
    return found


def check_requires(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK005: REQUIRES that is not semver (parse(validate=True) would reject it)."""
    return [
        _diag(
            "MK005", _first(inst.value_pos, inst.pos), REQUIRES_NOT_SEMVER, "e.g. REQUIRES 0.14.0"
        )
        for inst in mf.of_type(Requires)
        if not is_valid_requires(inst.version)
    ]


# -- templates ----------------------------------------------------------------------------


def _quote_width(lines: tuple[str, ...], start: Position) -> int:
    """How many quote characters open the value at ``start`` (0, 1 or 3)."""
    if not 0 < start.line <= len(lines):
        return 0
    rest = lines[start.line - 1][start.col - 1 :]
    return 3 if rest.startswith('"""') else 1 if rest.startswith('"') else 0


def _template_position(inst: Template, ctx: LintContext, line: int, col: int) -> Position:
    """Modelfile position of 1-based ``line``/0-based ``col`` inside a TEMPLATE's text."""
    start = inst.value_pos if inst.value_pos.line else inst.pos
    out_line = start.line + max(line, 1) - 1
    out_col = max(col, 0) + 1
    if max(line, 1) == 1:
        out_col += start.col - 1 + _quote_width(ctx.lines, start)
    return Position(out_line, out_col)


def check_template_syntax(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK010: TEMPLATE syntax errors, placed at their line in the Modelfile."""
    found = []
    for inst in mf.of_type(Template):
        err = template_error(inst.text)
        if err is None:
            continue
        where = _template_position(inst, ctx, err.line, err.col)
        found.append(
            _diag(
                "MK010",
                where,
                f"template error: {err}",
                "check that every {{ if }}/{{ range }}/{{ with }} has its {{ end }}",
            )
        )
    return found


def _go_template(text: str) -> GoTemplate | None:
    if is_jinja_template(text):
        return None
    try:
        return GoTemplate(text)
    except TemplateError:
        return None


def _field_position(inst: Template, ctx: LintContext, name: str) -> tuple[str, Position]:
    """The field as written (its case) and where it first appears, else the TEMPLATE."""
    match = re.search(r"\.(" + re.escape(name) + r")\b", inst.text, flags=re.IGNORECASE)
    if match is None:
        return name, _first(inst.pos)
    before = inst.text[: match.start()]
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1)
    return match.group(1), _template_position(inst, ctx, line, col)


def check_template_fields(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK011 fields Ollama never sets; MK012 neither .Prompt nor .Messages rendered."""
    found: list[LintDiagnostic] = []
    for inst in mf.of_type(Template):
        tmpl = _go_template(inst.text)
        if tmpl is None:
            continue
        try:
            used = tmpl.vars()
        except TemplateError:
            continue
        for name in used:
            if name.startswith("$") or name in KNOWN_TEMPLATE_FIELDS:
                continue
            written, where = _field_position(inst, ctx, name)
            close = difflib.get_close_matches(name, KNOWN_TEMPLATE_FIELDS, n=1, cutoff=0.75)
            hint = (
                f"did you mean .{_CANONICAL_FIELDS[close[0]]}?"
                if close
                else "Ollama sets .System, .Prompt, .Response, .Messages and .Tools"
            )
            found.append(
                _diag(
                    "MK011",
                    where,
                    f"template uses .{written}, which Ollama never sets (it renders empty)",
                    hint,
                )
            )
        if not {"prompt", "messages", "query", "document"} & set(used):
            found.append(
                _diag(
                    "MK012",
                    _first(inst.pos),
                    "template never renders .Prompt or .Messages",
                    "add {{ .Prompt }} or a {{ range .Messages }} loop",
                )
            )
    return found


@dataclass(frozen=True)
class ChatFormat:
    """A chat format recognised in template text, and the stop string that ends its turns.

    The format matches when the text holds every string in ``markers`` (Go template or
    Jinja2 alike: the markers are literal text in both).
    """

    name: str
    markers: tuple[str, ...]
    stop: str


CHAT_FORMATS: Final[tuple[ChatFormat, ...]] = (
    ChatFormat("ChatML", ("<|im_start|>",), "<|im_end|>"),
    ChatFormat("Llama 3", ("<|start_header_id|>",), "<|eot_id|>"),
    ChatFormat("Gemma", ("<start_of_turn>",), "<end_of_turn>"),
    # <|assistant|> rather than <|user|>: templates often write the role tag as <|{{ .Role }}|>
    ChatFormat("Phi-3", ("<|assistant|>", "<|end|>"), "<|end|>"),
    ChatFormat("Command R", ("<|START_OF_TURN_TOKEN|>",), "<|END_OF_TURN_TOKEN|>"),
    # after Phi-3, which has the same role tags but ends turns with <|end|>
    ChatFormat("Zephyr", ("<|assistant|>", "</s>"), "</s>"),
    # Ollama's mistral and llama2 models stop at the next [INST]
    ChatFormat("Mistral/Llama 2 [INST]", ("[INST]",), "[INST]"),
)
"""The chat formats MK013 knows, first match wins; stops as Ollama's library models set them."""


def chat_format(text: str) -> ChatFormat | None:
    """The known chat format of a template's text, or ``None``."""
    for fmt in CHAT_FORMATS:
        if all(marker in text for marker in fmt.markers):
            return fmt
    return None


def _stop_line(stop: str) -> str:
    """``PARAMETER stop "<stop>"`` (the stops above hold no quote or newline, so the
    double-quoted form reads back as exactly ``stop``)."""
    return f'PARAMETER stop "{stop}"'


def check_stop_sequences(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK013: the template's chat format has an end-of-turn string no PARAMETER stop covers.

    The template is the last TEMPLATE or, without one, a FROM GGUF's chat template. A stop
    covers the end-of-turn string when it is contained in it (generation halts there too).
    Stops inherited from a FROM model in the store are not looked up.
    """
    templates = mf.of_type(Template)
    if templates:
        inst: Instruction = templates[-1]
        fmt = chat_format(templates[-1].text)
        source = "TEMPLATE"
    else:
        ggufs = [(f, info) for f, info in _from_ggufs(mf, ctx) if info.chat_template]
        if not ggufs:
            return []
        inst, info = ggufs[0]
        fmt = chat_format(info.chat_template or "")
        source = f"the GGUF chat template of {inst.value} (there is no TEMPLATE)"
    if fmt is None:
        return []
    stops = [p.value for p in mf.of_type(Parameter) if p.name == "stop" and p.value]
    if any(stop in fmt.stop for stop in stops):
        return []
    return [
        _diag(
            "MK013",
            _first(inst.pos),
            f"{source} uses the {fmt.name} chat format but no PARAMETER stop "
            f'"{fmt.stop}" is set, so replies can run on past the end of the turn',
            _stop_line(fmt.stop),
        )
    ]


# -- FROM, MESSAGE, LICENSE, num_ctx -------------------------------------------------------

_PATHLIKE: Final = ("./", "../", "/", "~", ".\\", "..\\")


def looks_like_path(value: str) -> bool:
    """Whether a FROM value names a file rather than a model."""
    return value.startswith(_PATHLIKE) or value.lower().endswith(".gguf")


def resolve_from(value: str, base_dir: Path) -> Path:
    """A path-like FROM value resolved against the Modelfile's folder."""
    expanded = Path(os.path.expanduser(value))
    return expanded if expanded.is_absolute() else base_dir / expanded


def check_from_paths(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK020: FROM paths that do not exist."""
    found = []
    for inst in mf.of_type(From):
        if not looks_like_path(inst.value):
            continue
        target = resolve_from(inst.value, ctx.base_dir)
        if target.exists():
            continue
        found.append(
            _diag(
                "MK020",
                _first(inst.value_pos, inst.pos),
                f"FROM {inst.value}: no such file or directory ({target})",
                "paths resolve against the Modelfile's folder; fix the path or use a model name",
            )
        )
    return found


def check_messages(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK030: an assistant turn first, or two assistant turns in a row."""
    found = []
    previous: Message | None = None
    for inst in mf.of_type(Message):
        role = inst.role.lower()
        if role == "system":
            continue
        if role == "assistant":
            if previous is None:
                found.append(
                    _diag(
                        "MK030",
                        _first(inst.pos),
                        "the first MESSAGE (after system messages) is from the assistant",
                        "add a MESSAGE user line before it",
                    )
                )
            elif previous.role.lower() == "assistant":
                found.append(
                    _diag(
                        "MK030",
                        _first(inst.pos),
                        "two assistant MESSAGEs in a row (the previous one is on line "
                        f"{previous.pos.line})",
                        "put a MESSAGE user line between them or merge them",
                    )
                )
        previous = inst
    return found


def check_license(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK040: no LICENSE when the Modelfile is to be published."""
    if not ctx.publish or mf.of_type(License):
        return []
    first: Instruction | None = mf.instructions[0] if mf.instructions else None
    where = _first(first.pos) if first is not None else Position(1, 1)
    return [
        _diag(
            "MK040",
            where,
            "no LICENSE for a model meant for publishing",
            'add LICENSE """<license text>""" (e.g. the base model\'s license)',
        )
    ]


def _gguf_header(target: Path, ctx: LintContext) -> GGUFInfo | None:
    """The header of the GGUF file at ``target`` (read once per lint), or ``None``."""
    if target not in ctx.gguf_headers:
        from modelkit.store import read_gguf_info  # the store is heavy; import when needed

        info: GGUFInfo | None = None
        if target.is_file():
            try:
                info = read_gguf_info(target)
            except (StoreError, OSError, ValueError):
                info = None
        ctx.gguf_headers[target] = info
    return ctx.gguf_headers[target]


def _from_ggufs(mf: Modelfile, ctx: LintContext) -> list[tuple[From, GGUFInfo]]:
    """Each FROM that names a readable GGUF file, with its header."""
    found = []
    for inst in mf.of_type(From):
        if not looks_like_path(inst.value):
            continue
        info = _gguf_header(resolve_from(inst.value, ctx.base_dir), ctx)
        if info is not None:
            found.append((inst, info))
    return found


def _trained_context(mf: Modelfile, ctx: LintContext) -> tuple[int, str] | None:
    for inst, info in _from_ggufs(mf, ctx):
        if info.context_length:
            return info.context_length, inst.value
    return None


def check_num_ctx(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """MK050: num_ctx above the FROM GGUF's trained context length."""
    last: tuple[Parameter, int] | None = None
    for inst in mf.of_type(Parameter):
        if inst.name != "num_ctx":
            continue
        try:
            value = parse_parameter_value(inst.name, inst.value)
        except ParameterError:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            last = (inst, value)
    if last is None:
        return []
    trained = _trained_context(mf, ctx)
    if trained is None or last[1] <= trained[0]:
        return []
    inst, value = last
    return [
        _diag(
            "MK050",
            _first(inst.value_pos, inst.pos),
            f"num_ctx {value} is larger than the context {trained[1]} was trained with "
            f"({trained[0]})",
            f"use PARAMETER num_ctx {trained[0]} or less",
        )
    ]


Check = Callable[[Modelfile, LintContext], list[LintDiagnostic]]

CHECKS: Final[tuple[Check, ...]] = (
    check_parameters,
    check_requires,
    check_template_syntax,
    check_template_fields,
    check_stop_sequences,
    check_from_paths,
    check_messages,
    check_license,
    check_num_ctx,
)


def run_rules(mf: Modelfile, ctx: LintContext) -> list[LintDiagnostic]:
    """Every check's diagnostics, sorted by position (stable within a line)."""
    found = [diag for check in CHECKS for diag in check(mf, ctx)]
    return sorted(found, key=lambda d: (d.line, d.col))
