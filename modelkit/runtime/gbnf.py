"""Raw GBNF grammars from requests (a modelkit extension: Ollama takes only ``format``):
checked here, before any runner sees them, so a mistake is a 400 naming its line and column.
"""

from __future__ import annotations

import functools

from lark import Lark, Token, UnexpectedInput, UnexpectedToken

from modelkit.errors import RequestError
from modelkit.resources import grammar_text

__all__ = ["check_gbnf"]

MAX_GRAMMAR = 256 * 1024


@functools.cache
def _parser() -> Lark:
    return Lark(grammar_text("gbnf.lark"), parser="lalr", propagate_positions=True)


def _error(text: str, line: int, column: int, message: str) -> RequestError:
    source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    return RequestError(f"grammar:{line}:{column}: {message}\n  {source}\n  {' ' * (column - 1)}^")


def check_gbnf(text: str) -> None:
    """Raise :class:`RequestError` (line, column, the line) unless ``text`` is a GBNF
    grammar whose rules are all defined and that has a ``root``."""
    if len(text) > MAX_GRAMMAR:
        raise RequestError(f"the grammar is over {MAX_GRAMMAR // 1024} KiB")
    try:
        tree = _parser().parse(text)
    except UnexpectedToken as err:
        if err.token.type == "$END":  # Lark puts the end where the last token was
            lines = text.splitlines() or [""]
            raise _error(
                text, len(lines), len(lines[-1]) + 1, "unexpected end (an unclosed '('?)"
            ) from None
        if err.token.type == "NAME" and "RULE_START" in err.expected:
            what = f"expected '{err.token} ::=' to start a rule"
        else:
            what = f"unexpected {str(err.token)!r}"
        raise _error(text, err.line, err.column, what) from None
    except UnexpectedInput as err:
        found = text[err.pos_in_stream : err.pos_in_stream + 1] if err.pos_in_stream else ""
        raise _error(text, err.line, err.column, f"unexpected {found!r}") from None
    defined: dict[str, Token] = {}
    for rule in tree.find_data("rule"):
        start = rule.children[0]
        assert isinstance(start, Token)
        name = start.split("::=")[0].strip()
        if name in defined:
            raise _error(text, start.line or 1, start.column or 1, f"rule {name} is defined twice")
        defined[name] = start
    for ref in tree.find_data("ref"):
        token = ref.children[0]
        assert isinstance(token, Token)
        if str(token) not in defined:
            line, column = token.line or 1, token.column or 1
            raise _error(text, line, column, f"undefined rule {token}")
    if "root" not in defined:
        raise RequestError("grammar: no rule named root (generation starts there)")
