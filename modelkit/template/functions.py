"""The functions a template can call: Go's built-ins plus Ollama's FuncMap.

Built-ins (Go ``text/template``): ``and or not eq ne lt le gt ge len index slice print printf
println html js urlquery call``. Ollama adds ``json``, ``currentDate``, ``yesterdayDate`` and
``toTypeScriptType``.

A function raises :class:`FuncError` with Go's message; the evaluator reports it as
``error calling NAME: MESSAGE`` at the call's position. ``and``/``or`` get their arguments as
thunks (zero-argument callables) so that they short-circuit as in Go 1.18+.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from modelkit.template.gofmt import is_go_printable, sprint, sprintf, sprintln
from modelkit.template.values import go_json, go_type_name, is_true, kind

__all__ = ["BUILTINS", "FuncError", "GoFunc"]


class FuncError(Exception):
    """An error a template function returns (``error calling NAME: ...``)."""


@dataclass(frozen=True)
class GoFunc:
    """A template function: ``fn(*args)``, its arity, and whether it takes thunks (lazy).

    ``nil_type`` is the Go parameter type a literal ``nil`` argument cannot be assigned to
    (``reflect.Value`` for most built-ins), or ``None`` when its parameters are ``any``.
    """

    name: str
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None = None
    lazy: bool = False
    nil_type: str | None = "reflect.Value"

    def check_arity(self, got: int) -> str | None:
        """Go's arity message when ``got`` arguments do not fit, else ``None``."""
        if self.max_args == self.min_args and got != self.min_args:
            return f"wrong number of args for {self.name}: want {self.min_args} got {got}"
        if got < self.min_args:
            return f"wrong number of args for {self.name}: want at least {self.min_args} got {got}"
        if self.max_args is not None and got > self.max_args:
            return f"wrong number of args for {self.name}: want at most {self.max_args} got {got}"
        return None


# ---- logic -------------------------------------------------------------------------------

Thunk = Callable[[], Any]


def _and(*thunks: Thunk) -> Any:
    """The first false argument, or the last one."""
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if not is_true(value):
            return value
    return value


def _or(*thunks: Thunk) -> Any:
    """The first true argument, or the last one."""
    value: Any = None
    for thunk in thunks:
        value = thunk()
        if is_true(value):
            return value
    return value


def _not(value: Any) -> bool:
    return not is_true(value)


# ---- comparison --------------------------------------------------------------------------

_BASIC = {"bool", "int", "float", "complex", "string"}


def _basic_kind(value: Any) -> str:
    k = kind(value)
    return k if k in _BASIC or k == "invalid" else "other"


def _eq_one(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka != kb:
        if ka != "invalid" and kb != "invalid":
            raise FuncError("incompatible types for comparison")
        return False
    if ka == "invalid":
        return True
    if ka != "other":
        return bool(a == b)
    if isinstance(a, list | tuple | Mapping | bytes | bytearray) or isinstance(
        b, list | tuple | Mapping | bytes | bytearray
    ):
        raise FuncError(f"non-comparable type {go_type_name(a)}")
    if type(a) is not type(b):
        raise FuncError("incompatible types for comparison")
    return bool(a == b)


def _eq(first: Any, *others: Any) -> bool:
    """``eq a b c`` is ``a == b || a == c``."""
    if not others:
        raise FuncError("missing argument for comparison")
    return any(_eq_one(first, other) for other in others)


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("invalid", "other", "bool", "complex") or kb in (
        "invalid",
        "other",
        "bool",
        "complex",
    ):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _gt(a: Any, b: Any) -> bool:
    return not _le(a, b)


def _ge(a: Any, b: Any) -> bool:
    return not _lt(a, b)


# ---- collections -------------------------------------------------------------------------


def _len(value: Any) -> int:
    if value is None:
        raise FuncError("len of nil pointer")
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list | tuple | Mapping | bytes | bytearray):
        return len(value)
    raise FuncError(f"len of type {go_type_name(value)}")


def _int_index(index: Any, what: str) -> int:
    if index is None:
        raise FuncError(f"cannot index {what} with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index {what} with type {go_type_name(index)}")
    return index


def _index_one(item: Any, index: Any) -> Any:
    if item is None:
        raise FuncError("index of untyped nil")
    if isinstance(item, Mapping):
        if index is None:
            raise FuncError("value is nil; should be of type string")
        if not isinstance(index, str):
            raise FuncError(f"value has type {go_type_name(index)}; should be string")
        return item.get(index)
    if isinstance(item, str):
        item = item.encode("utf-8", "surrogatepass")
    if isinstance(item, list | tuple | bytes | bytearray):
        i = _int_index(index, "slice/array")
        if i < 0 or i >= len(item):
            raise FuncError(f"index out of range: {i}")
        return item[i]
    raise FuncError(f"can't index item of type {go_type_name(item)}")


def _index(item: Any, *indexes: Any) -> Any:
    """``index x 1 2`` is ``x[1][2]``; a missing map key gives nil."""
    for index in indexes:
        item = _index_one(item, index)
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    """``slice x 1 2`` is ``x[1:2]`` (strings by bytes, as in Go)."""
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    is_str = isinstance(item, str)
    if not is_str and not isinstance(item, list | tuple | bytes | bytearray):
        raise FuncError(f"can't slice item of type {go_type_name(item)}")
    if is_str and len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    seq = item.encode("utf-8", "surrogatepass") if is_str else item
    bounds = [_int_index(i, "slice/array") for i in indexes]
    cap = len(seq)
    for b in bounds:
        if b < 0 or b > cap:
            raise FuncError(f"index out of range: {b}")
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else cap
    if lo > hi:
        raise FuncError(f"invalid slice index: {lo} > {hi}")
    if len(bounds) == 3 and hi > bounds[2]:
        raise FuncError(f"invalid slice index: {hi} > {bounds[2]}")
    part = seq[lo:hi]
    return part.decode("utf-8", "replace") if is_str else part


# ---- printing and escaping ---------------------------------------------------------------


def _print(*args: Any) -> str:
    return sprint(args)


def _println(*args: Any) -> str:
    return sprintln(args)


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise FuncError(f"wrong type for value; expected string; got {go_type_name(fmt)}")
    return sprintf(fmt, args)


def _eval_args(args: Sequence[Any]) -> str:
    """Go's ``evalArgs``: a lone string as is, else ``fmt.Sprint(args...)``."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(args)


_HTML_ESCAPES = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def _html(*args: Any) -> str:
    return "".join(_HTML_ESCAPES.get(ch, ch) for ch in _eval_args(args))


_JS_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _js_char(ch: str) -> str:
    if ch in _JS_ESCAPES:
        return _JS_ESCAPES[ch]
    code = ord(ch)
    if code < 0x20:
        return f"\\u00{code:02X}"
    if code >= 0x80 and not is_go_printable(ch):
        return f"\\u{code:04X}"
    return ch


def _js(*args: Any) -> str:
    return "".join(_js_char(ch) for ch in _eval_args(args))


def _urlquery(*args: Any) -> str:
    return quote_plus(_eval_args(args), safe="")


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise FuncError("call of nil")
    if not callable(fn):
        raise FuncError(f"non-function of type {go_type_name(fn)}")
    return fn(*args)


# ---- Ollama's FuncMap --------------------------------------------------------------------


def _json(value: Any) -> str:
    """Go ``json.Marshal`` (HTML-escaped, no newline); ``""`` when it fails, as in Ollama."""
    return go_json(value, on_error="")


def _date_args(args: Sequence[Any]) -> None:
    for arg in args:
        if not isinstance(arg, str):
            raise FuncError(f"wrong type for value; expected string; got {go_type_name(arg)}")


def _current_date(*args: Any) -> str:
    """Today's local date as ``YYYY-MM-DD`` (a format argument is accepted and ignored)."""
    _date_args(args)
    return datetime.date.today().isoformat()


def _yesterday_date(*args: Any) -> str:
    """Yesterday's local date as ``YYYY-MM-DD``."""
    _date_args(args)
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


def _to_typescript_type(value: Any) -> str:
    """A tool property's TypeScript type (``string | number``); ``any`` for other values."""
    method = getattr(value, "to_typescript_type", None)
    if method is None or not callable(method):
        return "any"
    result = method()
    return result if isinstance(result, str) else "any"


def _funcs(*specs: GoFunc) -> dict[str, GoFunc]:
    return {spec.name: spec for spec in specs}


BUILTINS: Mapping[str, GoFunc] = _funcs(
    GoFunc("and", _and, 1, None, lazy=True),
    GoFunc("or", _or, 1, None, lazy=True),
    GoFunc("not", _not, 1, 1),
    GoFunc("eq", _eq, 1, None),
    GoFunc("ne", _ne, 2, 2),
    GoFunc("lt", _lt, 2, 2),
    GoFunc("le", _le, 2, 2),
    GoFunc("gt", _gt, 2, 2),
    GoFunc("ge", _ge, 2, 2),
    GoFunc("len", _len, 1, 1),
    GoFunc("index", _index, 1, None),
    GoFunc("slice", _slice, 1, None),
    GoFunc("print", _print, 0, None, nil_type=None),
    GoFunc("printf", _printf, 1, None, nil_type=None),
    GoFunc("println", _println, 0, None, nil_type=None),
    GoFunc("html", _html, 0, None, nil_type=None),
    GoFunc("js", _js, 0, None, nil_type=None),
    GoFunc("urlquery", _urlquery, 0, None, nil_type=None),
    GoFunc("call", _call, 1, None),
    GoFunc("json", _json, 1, 1, nil_type=None),
    GoFunc("currentDate", _current_date, 0, None, nil_type="string"),
    GoFunc("yesterdayDate", _yesterday_date, 0, None, nil_type="string"),
    GoFunc("toTypeScriptType", _to_typescript_type, 1, 1, nil_type=None),
)
