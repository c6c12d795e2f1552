"""Go's ``fmt`` printing for template values: ``%v``, ``Sprint``, ``Sprintln``, ``Sprintf``.

What templates print goes through here: ``{{ .X }}`` is ``fmt.Fprint``, ``print``/``println``/
``printf`` are ``fmt.Sprint``/``Sprintln``/``Sprintf``. Covered:

- ``%v`` of every value kind: ``true``, ``42``, floats in Go's shortest form (``1e+06``,
  ``0.1``, ``+Inf``), ``[a b]``, ``map[k:v]`` (sorted keys), ``{f1 f2}`` (``%+v``:
  ``{Name:f1 ...}``), ``<nil>``; ``fmt.Stringer`` values (``go_string()``) print their text;
- verbs ``%v %s %q %d %t %f %F %e %E %g %G %x %X %o %O %b %c %U %T %%`` with flags ``+ - # 0``
  and space, width and precision (also ``*``), applied element-wise to slices and maps;
- Go's error forms: ``%!d(string=hi)``, ``%!s(MISSING)``, ``%!(EXTRA int=1)``, ``%!(NOVERB)``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from modelkit.template.values import GoStruct, go_type_name, sorted_items, stringer_text

__all__ = [
    "format_float",
    "format_value",
    "go_quote",
    "is_go_printable",
    "sprint",
    "sprintf",
    "sprintln",
]


@dataclass(frozen=True)
class _Spec:
    """One parsed ``%`` directive: flags, width and precision (``None`` when absent)."""

    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    plus_v: bool = False
    width: int | None = None
    prec: int | None = None


_PLAIN = _Spec()


# ---- floats ------------------------------------------------------------------------------


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``abs(x) > 0`` and ``dp`` with value = 0.DIGITS × 10^dp."""
    _sign, digit_tuple, exp = Decimal(repr(abs(x))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    return stripped, exp + len(stripped)


def _shortest_g(x: float, upper: bool) -> str:
    """``strconv.FormatFloat(x, 'g', -1, 64)``: the shortest digits, in %e form when the
    decimal exponent is < -4 or >= 6 (so ``1e+06``, ``123456``, ``1e-05``, ``0.0001``)."""
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign = "-" if x < 0 else ""
    digits, dp = _shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_sign = "-" if exp < 0 else "+"
        text = f"{sign}{mantissa}e{exp_sign}{abs(exp):02d}"
    elif dp <= 0:
        text = f"{sign}0.{'0' * -dp}{digits}"
    elif dp >= len(digits):
        text = f"{sign}{digits}{'0' * (dp - len(digits))}"
    else:
        text = f"{sign}{digits[:dp]}.{digits[dp:]}"
    return text.upper() if upper else text


def format_float(x: float, verb: str = "g", prec: int | None = None) -> str:
    """``strconv.FormatFloat`` for verbs e E f F g G; ``prec=None`` is Go's shortest (-1) for
    g/G and 6 for e/f."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if verb in "gG" and prec is None:
        return _shortest_g(x, verb == "G")
    p = 6 if prec is None else prec
    if verb == "F":
        verb = "f"
    return f"{x:.{p}{verb}}"


# ---- strings -----------------------------------------------------------------------------

_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def is_go_printable(ch: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols and U+0020."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def _quote_char(ch: str, quote: str, ascii_only: bool) -> str:
    code = ord(ch)
    if ch in (quote, "\\"):
        return "\\" + ch
    if is_go_printable(ch) and (not ascii_only or code < 0x80):
        return ch
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return "\\ufffd"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str, *, ascii_only: bool = False, quote: str = '"') -> str:
    """Go's ``strconv.Quote`` (``ascii_only``: ``QuoteToASCII``; ``quote="'"``: a rune)."""
    return quote + "".join(_quote_char(ch, quote, ascii_only) for ch in text) + quote


def _can_backquote(text: str) -> bool:
    return all(ch == "\t" or (ch != "`" and ch != "\ufeff" and ord(ch) >= 0x20) for ch in text)


# ---- padding and numbers -----------------------------------------------------------------


def _pad(text: str, spec: _Spec, *, zero_ok: bool = True) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    fill = spec.width - len(text)
    if spec.minus:
        return text + " " * fill
    if spec.zero and zero_ok:
        return "0" * fill + text
    return " " * fill + text


def _sign(negative: bool, spec: _Spec) -> str:
    if negative:
        return "-"
    if spec.plus:
        return "+"
    return " " if spec.space else ""


def _with_number_padding(sign: str, body: str, spec: _Spec, *, zero_ok: bool = True) -> str:
    """Pad a number: zeros go between the sign/prefix and the digits (Go's ``0`` flag)."""
    if spec.zero and zero_ok and not spec.minus and spec.width is not None:
        need = spec.width - len(sign) - len(body)
        if need > 0:
            body = "0" * need + body
        return sign + body
    return _pad(sign + body, spec, zero_ok=False)


_INT_BASES = {"d": 10, "v": 10, "x": 16, "X": 16, "o": 8, "O": 8, "b": 2}


def _int_digits(n: int, verb: str) -> str:
    base = _INT_BASES[verb]
    if base == 10:
        return str(n)
    text = format(n, {16: "x", 8: "o", 2: "b"}[base])
    return text.upper() if verb == "X" else text


def _int_prefix(verb: str, spec: _Spec, digits: str) -> str:
    if verb == "O":
        return "0o"
    if not spec.sharp:
        return ""
    if verb in "xX":
        return "0" + verb
    if verb == "b":
        return "0b"
    if verb == "o" and not digits.startswith("0"):
        return "0"
    return ""


def _format_int(n: int, verb: str, spec: _Spec) -> str:
    if verb == "c":
        return _pad(chr(n) if 0 <= n <= 0x10FFFF else "\ufffd", spec)
    if verb == "q":
        return _pad(go_quote(chr(n), quote="'", ascii_only=spec.plus), spec)
    if verb == "U":
        text = f"U+{n:04X}"
        if spec.sharp and 0 <= n <= 0x10FFFF and is_go_printable(chr(n)):
            text += f" '{chr(n)}'"
        return _pad(text, spec)
    digits = _int_digits(abs(n), verb)
    if spec.prec is not None:
        digits = "" if spec.prec == 0 and n == 0 else digits.zfill(spec.prec)
    prefix = _int_prefix(verb, spec, digits)
    sign = _sign(n < 0, spec)
    return _with_number_padding(sign + prefix, digits, spec, zero_ok=spec.prec is None)


def _format_float_verb(x: float, verb: str, spec: _Spec) -> str:
    go_verb = "g" if verb == "v" else verb
    text = format_float(x, go_verb, spec.prec)
    if math.isinf(x):
        return _pad(text, spec, zero_ok=False)
    if math.isnan(x):
        return _pad(_sign(False, spec) + text, spec, zero_ok=False)
    negative = text.startswith("-")
    return _with_number_padding(_sign(negative, spec), text.lstrip("-"), spec)


def _format_complex(z: complex, verb: str, spec: _Spec) -> str:
    inner = replace(spec, width=None, plus=True, space=False, zero=False)
    real = _format_float_verb(z.real, verb, replace(spec, width=None, zero=False))
    imag = _format_float_verb(z.imag, verb, inner)
    return _pad(f"({real}{imag}i)", spec, zero_ok=False)


def _format_string(text: str, verb: str, spec: _Spec) -> str:
    if spec.prec is not None:
        text = text[: spec.prec]
    if verb == "q":
        if spec.sharp and _can_backquote(text):
            return _pad("`" + text + "`", spec)
        return _pad(go_quote(text, ascii_only=spec.plus), spec)
    if verb in "xX":
        return _pad(_hex_bytes(text.encode("utf-8"), verb, spec), spec)
    return _pad(text, spec)


def _hex_bytes(data: bytes, verb: str, spec: _Spec) -> str:
    digits = "0123456789abcdef" if verb == "x" else "0123456789ABCDEF"
    prefix = ("0" + verb) if spec.sharp else ""
    parts = [prefix + digits[b >> 4] + digits[b & 15] for b in data]
    if spec.space:
        return " ".join(parts)
    return prefix + "".join(p[len(prefix) :] for p in parts)


# ---- the generic printer -----------------------------------------------------------------


def _bad_verb(value: Any, verb: str) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type_name(value)}={format_value(value)})"


def _format_struct(value: GoStruct, verb: str, spec: _Spec) -> str:
    parts = []
    for name, field_value in value.go_field_items():
        text = _format_arg(field_value, verb, spec)
        parts.append(f"{name}:{text}" if spec.plus_v and verb == "v" else text)
    return "{" + " ".join(parts) + "}"


def _format_sequence(items: Sequence[Any], verb: str, spec: _Spec) -> str:
    return "[" + " ".join(_format_arg(item, verb, spec) for item in items) + "]"


def _format_mapping(mapping: Mapping[Any, Any], verb: str, spec: _Spec) -> str:
    parts = [
        f"{_format_arg(k, verb, spec)}:{_format_arg(v, verb, spec)}"
        for k, v in sorted_items(mapping)
    ]
    return "map[" + " ".join(parts) + "]"


def _format_scalar(value: Any, verb: str, spec: _Spec) -> str | None:
    """Format bools, numbers and strings; ``None`` when ``value`` is none of those."""
    if isinstance(value, bool):
        return _pad(str(value).lower(), spec) if verb in "tv" else _bad_verb(value, verb)
    if isinstance(value, int):
        return _format_int(value, verb, spec) if verb in "bcdoOqxXUv" else _bad_verb(value, verb)
    if isinstance(value, float):
        return (
            _format_float_verb(value, verb, spec) if verb in "eEfFgGv" else _bad_verb(value, verb)
        )
    if isinstance(value, complex):
        return _format_complex(value, verb, spec) if verb in "eEfFgGv" else _bad_verb(value, verb)
    if isinstance(value, str):
        return _format_string(value, verb, spec) if verb in "vsqxX" else _bad_verb(value, verb)
    return None


def _format_arg(value: Any, verb: str, spec: _Spec) -> str:
    """Format one argument with one verb, as ``fmt.(*pp).printArg`` does."""
    if verb == "T":
        return _pad(go_type_name(value), spec)
    if value is None:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(value, verb)
    if verb in "vsxXq":
        text = stringer_text(value)
        if text is not None:
            return _format_string(text, "s" if verb == "v" else verb, spec)
    if verb == "v" and spec.sharp and isinstance(value, str):
        return _pad(go_quote(value), spec)
    scalar = _format_scalar(value, verb, spec)
    if scalar is not None:
        return scalar
    if isinstance(value, bytes | bytearray):
        if verb in "sqxX":
            return _format_string(bytes(value).decode("utf-8", "replace"), verb, spec)
        return _format_sequence(list(value), verb, spec)
    if isinstance(value, list | tuple):
        return _format_sequence(value, verb, spec)
    if isinstance(value, Mapping):
        return _format_mapping(value, verb, spec)
    if isinstance(value, GoStruct):
        return _format_struct(value, verb, spec)
    return _pad(str(value), spec)


def format_value(value: Any) -> str:
    """``fmt.Sprint(value)``: the ``%v`` form."""
    return _format_arg(value, "v", _PLAIN)


def sprint(args: Sequence[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def sprintln(args: Sequence[Any]) -> str:
    """``fmt.Sprintln``: operands separated by spaces, then a newline."""
    return " ".join(format_value(arg) for arg in args) + "\n"


# ---- Sprintf -----------------------------------------------------------------------------


class _Directive:
    """Reads ``%[flags][width][.prec]verb`` directives out of a format string."""

    def __init__(self, fmt: str, args: Sequence[Any]) -> None:
        self.fmt = fmt
        self.args = args
        self.i = 0
        self.argi = 0
        self.out: list[str] = []

    def run(self) -> str:
        fmt = self.fmt
        while self.i < len(fmt):
            j = fmt.find("%", self.i)
            if j < 0:
                self.out.append(fmt[self.i :])
                break
            self.out.append(fmt[self.i : j])
            self.i = j + 1
            self._directive()
        if self.argi < len(self.args):
            extra = ", ".join(
                "<nil>" if a is None else f"{go_type_name(a)}={format_value(a)}"
                for a in self.args[self.argi :]
            )
            self.out.append(f"%!(EXTRA {extra})")
        return "".join(self.out)

    def _flags(self) -> dict[str, bool]:
        names = {"-": "minus", "+": "plus", "#": "sharp", " ": "space", "0": "zero"}
        flags: dict[str, bool] = {}
        while self.i < len(self.fmt) and self.fmt[self.i] in names:
            flags[names[self.fmt[self.i]]] = True
            self.i += 1
        return flags

    def _number(self) -> int | None:
        start = self.i
        while self.i < len(self.fmt) and self.fmt[self.i].isdigit():
            self.i += 1
        return int(self.fmt[start : self.i]) if self.i > start else None

    def _star(self) -> int | None:
        """A ``*`` width/precision taken from the arguments (``None``: bad or missing)."""
        self.i += 1
        if self.argi >= len(self.args):
            return None
        arg = self.args[self.argi]
        self.argi += 1
        return arg if isinstance(arg, int) and not isinstance(arg, bool) else None

    def _width_and_prec(self, flags: dict[str, bool]) -> tuple[int | None, int | None]:
        width: int | None
        if self.i < len(self.fmt) and self.fmt[self.i] == "*":
            width = self._star()
            if width is None:
                self.out.append("%!(BADWIDTH)")
            elif width < 0:
                flags["minus"], width = True, -width
        else:
            width = self._number()
        prec: int | None = None
        if self.i < len(self.fmt) and self.fmt[self.i] == ".":
            self.i += 1
            if self.i < len(self.fmt) and self.fmt[self.i] == "*":
                prec = self._star()
                if prec is None or prec < 0:
                    self.out.append("%!(BADPREC)")
                    prec = None
            else:
                prec = self._number() or 0
        return width, prec

    def _directive(self) -> None:
        flags = self._flags()
        width, prec = self._width_and_prec(flags)
        if self.i >= len(self.fmt):
            self.out.append("%!(NOVERB)")
            return
        verb = self.fmt[self.i]
        self.i += 1
        if verb == "%":
            self.out.append("%")
            return
        if self.argi >= len(self.args):
            self.out.append(f"%!{verb}(MISSING)")
            return
        arg = self.args[self.argi]
        self.argi += 1
        if verb == "v" and flags.pop("plus", False):
            flags["plus_v"] = True  # %+v names struct fields; it signs no numbers
        spec = _Spec(width=width, prec=prec, **flags)
        self.out.append(_format_arg(arg, verb, spec))


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """``fmt.Sprintf(fmt, args...)``."""
    return _Directive(fmt, args).run()
