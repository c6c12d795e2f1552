"""Ollama's PARAMETER table and the Go rules for typing a parameter's text.

Ollama types ``PARAMETER name value`` lines on the client (``api.FormatParams`` while building
the create request) from the ``Options``/``Runner`` structs: unknown names are an error,
deprecated names are skipped with a warning, and values are parsed with Go's ``strconv``:

* int   -- ``ParseInt(v, 10, 64)``: ASCII digits with an optional sign; no spaces, no ``_``.
* float -- ``ParseFloat(v, 32)``: Go float literal syntax (decimal or ``0x…p…`` hex, ``_``
  only between digits), correctly rounded to float32. Out of float32 range is an error; so
  are NaN and Inf here, because the value ends up in JSON, which cannot hold them.
* bool  -- ``ParseBool``: ``1 t T TRUE true True 0 f F FALSE false False``.
* list  -- ``stop``: every occurrence appends one string.

A float is returned as the Python float of the float32's shortest decimal form, so
``"0.7"`` gives ``0.7`` (not ``0.699999988079071``) and JSON shows what Ollama shows.
"""

from __future__ import annotations

import difflib
import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Final

from modelkit.errors import ModelfileError
from modelkit.modelfile.ast import Modelfile, Parameter, ParamValue

__all__ = [
    "DEPRECATED_PARAMETERS",
    "PARAMETER_TYPES",
    "ParameterError",
    "format_parameter_value",
    "parse_parameter_value",
    "typed_parameters",
]

PARAMETER_TYPES: Final[dict[str, str]] = {
    # Options
    "num_keep": "int",
    "seed": "int",
    "num_predict": "int",
    "top_k": "int",
    "top_p": "float",
    "min_p": "float",
    "typical_p": "float",
    "repeat_last_n": "int",
    "temperature": "float",
    "repeat_penalty": "float",
    "presence_penalty": "float",
    "frequency_penalty": "float",
    "stop": "list",
    # Runner
    "num_ctx": "int",
    "num_batch": "int",
    "num_gpu": "int",
    "main_gpu": "int",
    "use_mmap": "bool",
    "num_thread": "int",
    "draft_num_predict": "int",
}
"""Every parameter Ollama accepts, name -> ``"int" | "float" | "bool" | "list"``."""

DEPRECATED_PARAMETERS: Final[frozenset[str]] = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)
"""Names Ollama still parses but ignores, printing ``warning: parameter <name> is deprecated``."""

_TYPE_WORDS: Final[dict[str, str]] = {
    "int": "an int (a whole number, e.g. 40)",
    "float": "a float (a number, e.g. 0.7)",
    "bool": "a bool (true or false)",
    "list": "a string",
}


class ParameterError(ModelfileError):
    """A PARAMETER whose name is unknown or whose value does not parse as its type.

    ``parameter`` is the parameter name, ``value`` the raw text (``None`` for unknown names).
    Raised without a position by :func:`parse_parameter_value`; ``parse`` re-raises it with
    the file position filled in.
    """

    def __init__(
        self,
        message: str,
        *,
        parameter: str,
        value: str | None = None,
        path: str = "<string>",
        line: int = 0,
        col: int = 0,
        source_line: str | None = None,
    ) -> None:
        super().__init__(message, path=path, line=line, col=col, source_line=source_line)
        self.parameter = parameter
        self.value = value

    def at(self, *, path: str, line: int, col: int, source_line: str | None) -> ParameterError:
        """A copy of this error placed at a position in a file."""
        return ParameterError(
            self.message,
            parameter=self.parameter,
            value=self.value,
            path=path,
            line=line,
            col=col,
            source_line=source_line,
        )


def unknown_parameter_message(name: str) -> str:
    """Ollama's ``unknown parameter '<name>'``, plus a suggestion when one is close."""
    message = f"unknown parameter '{name}'"
    close = difflib.get_close_matches(name.lower(), PARAMETER_TYPES, n=1, cutoff=0.75)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def parse_parameter_value(name: str, raw: str) -> ParamValue:
    """Type one ``PARAMETER name raw`` the way Ollama does.

    Returns an ``int``, ``float``, ``bool`` or, for ``stop``, a one-item ``list[str]``.
    Raises :class:`ParameterError` for an unknown name (deprecated names included: they have
    no type; callers skip them first) or a value that does not parse.
    """
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ParameterError(unknown_parameter_message(name), parameter=name)
    if kind == "list":
        return [raw]
    parsed: ParamValue | None
    if kind == "int":
        parsed = go_parse_int(raw)
    elif kind == "float":
        parsed = go_parse_float32(raw)
    else:
        parsed = go_parse_bool(raw)
    if parsed is None:
        # Go prints the value list with %s: "[v]".
        raise ParameterError(
            f"invalid {kind} value [{raw}]: parameter '{name}' expects {_TYPE_WORDS[kind]}",
            parameter=name,
            value=raw,
        )
    return parsed


def typed_parameters(mf: Modelfile) -> dict[str, ParamValue]:
    """The create request's ``parameters``: every PARAMETER typed, in first-seen order.

    A repeated name keeps its last value, except ``stop``, whose values accumulate in order.
    Deprecated names are skipped. Raises :class:`ParameterError` (with the position when the
    instruction has one) for an unknown name or a bad value.
    """
    out: dict[str, ParamValue] = {}
    for inst in mf.of_type(Parameter):
        if inst.name in DEPRECATED_PARAMETERS:
            continue
        try:
            value = parse_parameter_value(inst.name, inst.value)
        except ParameterError as err:
            where = inst.value_pos if err.value is not None else inst.name_pos
            if where.line <= 0:
                where = inst.pos
            raise err.at(path=mf.path, line=where.line, col=where.col, source_line=None) from None
        previous = out.get(inst.name)
        if isinstance(value, list) and isinstance(previous, list):
            out[inst.name] = previous + value
        else:
            out[inst.name] = value
    return out


def format_parameter_value(value: ParamValue | str) -> str:
    """The text of a typed value, as Ollama prints it (``show``): Go's ``%v``.

    Ints plainly, floats in their shortest form (``0.7``, ``1``, ``1e-07``,
    ``1.23456789e+08``), bools ``true``/``false``, strings as they are, and a list as its
    items in Go's ``[a b]`` form. Parsing the result gives the value back for every
    parameter type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_format_float(value)
    if isinstance(value, str):
        return value
    return "[" + " ".join(value) + "]"


# -- Go strconv, reimplemented from its documented behaviour ------------------------------

_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def go_parse_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``, or ``None`` where Go returns an error."""
    if not _INT_RE.fullmatch(text):
        return None
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


_BOOLS: Final[dict[str, bool]] = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def go_parse_bool(text: str) -> bool | None:
    """``strconv.ParseBool(text)``, or ``None`` where Go returns an error."""
    return _BOOLS.get(text)


# Go float literals. Underscores may appear in the digits; their placement is checked
# separately (_underscores_ok). A hex mantissa needs a binary exponent (p).
_DEC_FLOAT_RE: Final = re.compile(
    r"(?P<sign>[+-]?)(?=[0-9_]*\.?[0-9_]*[0-9])(?P<mant>[0-9_]*(?:\.[0-9_]*)?)"
    r"(?:[eE](?P<exp>[+-]?[0-9][0-9_]*))?"
)
_HEX_FLOAT_RE: Final = re.compile(
    r"(?P<sign>[+-]?)0[xX](?=[0-9a-fA-F_]*\.?[0-9a-fA-F_]*[0-9a-fA-F])"
    r"(?P<mant>[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?)[pP](?P<exp>[+-]?[0-9][0-9_]*)"
)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _underscores_ok(text: str) -> bool:
    """Go's rule: ``_`` only between digits, or between a base prefix and a digit."""
    body = text[1:] if text[:1] in "+-" else text
    hex_digits = False
    saw = "^"  # ^ start, 0 digit or prefix, _ underscore, ! anything else
    i = 0
    if len(body) >= 2 and body[0] == "0" and body[1] in "xXbBoO":
        i, saw, hex_digits = 2, "0", body[1] in "xX"
    for ch in body[i:]:
        if ch.isascii() and (ch.isdigit() or (hex_digits and ch in _HEX_DIGITS)):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


_F32_MAX_EXCLUSIVE: Final = Fraction(2**128)


def _round_to_float32(x: Fraction) -> float | None:
    """``x`` correctly rounded (ties to even) to a float32; ``None`` on overflow."""
    if x == 0:
        return 0.0
    negative = x < 0
    x = -x if negative else x
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if x < Fraction(2) ** e:
        e -= 1  # now 2**e <= x < 2**(e+1)
    quantum_exp = max(e, -126) - 23  # 24-bit significand; subnormals below 2**-126
    m = round(x / Fraction(2) ** quantum_exp)  # Fraction rounds half to even
    if Fraction(m) * Fraction(2) ** quantum_exp >= _F32_MAX_EXCLUSIVE:
        return None
    result = math.ldexp(m, quantum_exp)
    return -result if negative else result


def _exact_value(text: str) -> Fraction | None:
    """The exact rational a Go float literal denotes; ``None`` if it is not one.

    Magnitudes far outside float32's range are clamped (to 2**200 or 2**-200, which round the
    same way) so that huge exponents cost nothing.
    """
    if "_" in text and not _underscores_ok(text):
        return None
    hex_match = _HEX_FLOAT_RE.fullmatch(text)
    if hex_match is not None:
        mant = hex_match["mant"].replace("_", "")
        whole, _, frac = mant.partition(".")
        digits = int((whole + frac) or "0", 16)
        exp2 = int(hex_match["exp"].replace("_", "")) - 4 * len(frac)
        if digits == 0:
            value = Fraction(0)
        else:
            magnitude = digits.bit_length() + exp2
            if magnitude > 200:
                value = Fraction(2) ** 200
            elif magnitude < -200:
                value = Fraction(2) ** -200
            else:
                value = digits * Fraction(2) ** exp2
        return -value if hex_match["sign"] == "-" else value
    dec_match = _DEC_FLOAT_RE.fullmatch(text)
    if dec_match is None:
        return None
    literal = dec_match["mant"].replace("_", "")
    if dec_match["exp"] is not None:
        literal += "e" + dec_match["exp"].replace("_", "")
    dec = Decimal(literal)
    if dec.is_zero():
        value = Fraction(0)
    elif dec.adjusted() > 60:
        value = Fraction(2) ** 200
    elif dec.adjusted() < -60:
        value = Fraction(2) ** -200
    else:
        value = Fraction(dec)
    return -value if dec_match["sign"] == "-" else value


def go_parse_float32(text: str) -> float | None:
    """``strconv.ParseFloat(text, 32)`` as a JSON-safe value, or ``None`` on error.

    Errors: bad syntax, out of float32 range, and (unlike Go) NaN and infinities. The result
    is the float of the float32's shortest decimal form (``"0.1"`` -> ``0.1``).
    """
    exact = _exact_value(text)
    if exact is None:
        return None
    f32 = _round_to_float32(exact)
    if f32 is None:
        return None
    if f32 == 0.0 and text.lstrip().startswith("-"):
        return -0.0
    return float(shortest_float32_repr(f32))


def shortest_float32_repr(f32: float) -> str:
    """The shortest decimal string that parses back to the float32 ``f32`` (Go's 'g', -1, 32).

    ``f32`` must be exactly representable as a float32. Among equally short candidates the
    one closest to the exact value wins.
    """
    if f32 == 0.0:
        return "-0" if math.copysign(1.0, f32) < 0 else "0"
    exact = Fraction(f32)
    for digits in range(1, 10):
        nearest = Decimal(f"{f32:.{digits - 1}e}")
        step = Decimal(1).scaleb(nearest.adjusted() - digits + 1)
        candidates = [nearest, nearest - step, nearest + step]
        good = [c for c in candidates if c and _round_to_float32(Fraction(c)) == f32]
        if good:
            best = min(good, key=lambda c: abs(Fraction(c) - exact))
            return _decimal_text(best)
    return repr(f32)  # not reached for a real float32: 9 digits always suffice


def _decimal_text(d: Decimal) -> str:
    """A short Decimal in Python float syntax (``0.7``, ``1e-07``, ``3.4028235e+38``)."""
    return repr(float(d))


def go_format_float(value: float) -> str:
    """Go's ``%v`` for a float64: shortest digits; exponent form below 1e-4 or from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    # Python's repr has the same shortest round-trip digits as Go.
    shortest = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    point = len(digits) + int(shortest.exponent)  # value = 0.<digits> * 10**point
    exp = point - 1
    if exp < -4 or exp >= 6:  # strconv 'g' with shortest precision decides with 6
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"
