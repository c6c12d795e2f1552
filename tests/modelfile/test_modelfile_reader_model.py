"""Differential test: the Lark grammar against a plain character-by-character reading model.

``read_like_ollama`` is a small independent model of how Ollama reads a Modelfile, written
from the documented rules (reference §1.1-1.4): a loop over characters with a handful of
states. Hypothesis feeds both it and ``parse(validate=False)`` texts built from the pieces
that matter (instruction words in any case, quotes, triple quotes, CR/LF, spaces, tabs,
``#``, non-printables, multi-byte characters) and checks that they agree on every command
and on the kind of every error.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelkit.errors import ModelfileError
from modelkit.modelfile import Instruction, Message, Parameter, instruction_argument, parse
from modelkit.modelfile.parser import INVALID_COMMAND, INVALID_ROLE, NO_FROM, is_go_printable

WORDS = {
    "from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
    "parameter", "message", "requires",
}  # fmt: skip
ROLES = {"system", "user", "assistant"}


def _letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _unquote(text: str) -> str | None:
    if text[:3] == '"""':
        return text[3:-3] if len(text) >= 6 and text[-3:] == '"""' else None
    if text[:1] == '"':
        return text[1:-1] if len(text) >= 2 and text[-1] == '"' else None
    return text


def read_like_ollama(text: str) -> list[tuple[str, str]] | str:
    """Commands as (name, args) -- name "model" for FROM, the parameter name for PARAMETER,
    args "role: text" for MESSAGE -- or an error kind: "command", "role", "eof", "from".

    A byte order mark at the very start is not part of the text (Ollama's decoder drops it).
    """
    text = text.removeprefix("\ufeff")
    out: list[tuple[str, str]] = []
    state = "line"
    buf = ""
    name = ""
    role = ""
    for ch in text:
        newline = ch in "\r\n"
        blank = ch in " \t"
        if state == "line":
            if ch == "#":
                state = "comment"
            elif not (blank or newline):
                state = "word"
                buf = ch if is_go_printable(ch) else ""
        elif state == "comment":
            if newline:
                state = "line"
        elif state == "word":
            if _letter(ch):
                buf += ch
            elif not blank or buf.lower() not in WORDS:
                return "command"
            else:
                word = buf.lower()
                state = {"parameter": "name", "message": "role"}.get(word, "value")
                name = "model" if word == "from" else word
                buf = ""
        elif state == "name":
            if _letter(ch) or (ch.isdigit() and ch.isascii()) or ch == "_":
                buf += ch
            elif blank:
                name, state, buf = buf, "value", ""
            else:
                return "eof"
        elif state == "role":
            if _letter(ch):
                buf += ch
            elif not blank:
                return "eof"
            elif buf not in ROLES:
                return "role"
            else:
                role, state, buf = buf, "value", ""
        elif state == "value":
            if newline:
                value = _unquote(buf.strip(" \t\r\n"))
                if value is None:
                    buf += ch
                else:
                    out.append((name, f"{role}: {value}" if role else value))
                    role, state, buf = "", "line", ""
            elif blank or is_go_printable(ch):
                buf += ch
    if state == "value":
        value = _unquote(buf.strip(" \t\r\n"))
        if value is None:
            return "eof"
        out.append((name, f"{role}: {value}" if role else value))
    elif state not in ("line", "comment"):
        return "eof"
    if not any(n == "model" for n, _ in out):
        return "from"
    return out


def as_commands(inst: Instruction) -> tuple[str, str]:
    if isinstance(inst, Parameter):
        return inst.name, inst.value
    if isinstance(inst, Message):
        return "message", f"{inst.role}: {inst.content}"
    if inst.command == "from":
        return "model", instruction_argument(inst)
    return inst.command, instruction_argument(inst)


def read_with_grammar(text: str) -> list[tuple[str, str]] | str:
    try:
        mf = parse(text, validate=False)
    except ModelfileError as err:
        if err.message == INVALID_COMMAND:
            return "command"
        if err.message == INVALID_ROLE:
            return "role"
        if err.message == NO_FROM:
            return "from"
        assert err.message.startswith("unexpected EOF"), err.message
        return "eof"
    return [as_commands(inst) for inst in mf.instructions]


PIECES = [
    "FROM ", "from ", "From\t", "SYSTEM ", "TEMPLATE ", "LICENSE ", "ADAPTER ", "DRAFT ",
    "REQUIRES ", "RENDERER ", "PARSER ", "PARAMETER ", "parameter ", "MESSAGE ", "stop ",
    "temperature ", "p_1 ", "user ", "system ", "assistant ", "User ", "bad ",
    '"', '"', '""', '"""', '"""', "'", "\n", "\n", "\r", "\r\n", " ", " ", "  ", "\t", "#",
    "# note\n", "x", "ab", "a b", "1", "_", "-", ":", "\\", "你好", "👋", "\x00", "\u200b",
    "\x7f", "\ufeff", "\u00a0", "\x0b", "FROM x\n", "SYSTEM\n", "MESSAGE user hi\n",
]  # fmt: skip

texts = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)


@settings(max_examples=1500, deadline=None)
@given(texts)
@example('FROM x\nSYSTEM """a""" b"""\n')
@example('FROM x\nSYSTEM ""\x00"x"""\n')
@example("\x00FROM x\n")
@example('FROM x\nSYSTEM "a"  \r\n"b"\n')
@example("FROM x\nPARAMETER  y z\n")
@example('FROM x\nSYSTEM """"\n""\n"""\n')
@example("FROM \n")
@example('FROM "x" \x00\n')
@example('FROM x\nMESSAGE bad "')  # the role is checked before the text is read
def test_grammar_reads_like_ollama(text: str) -> None:
    assert read_with_grammar(text) == read_like_ollama(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_grammar_reads_like_ollama_on_any_text(text: str) -> None:
    assert read_with_grammar("FROM x\n" + text) == read_like_ollama("FROM x\n" + text)


def test_reading_model_sanity() -> None:
    assert read_like_ollama("FROM foo # bar") == [("model", "foo # bar")]
    assert read_like_ollama("FROM\n") == "command"
    assert read_like_ollama("FROM x\nMESSAGE bad x\n") == "role"
    assert read_like_ollama('FROM x\nSYSTEM "') == "eof"
    assert read_like_ollama("") == "from"
