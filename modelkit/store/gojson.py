"""Go ``encoding/json`` output, byte for byte.

Blob digests depend on the exact bytes Ollama writes (reference conventions, §3.9), so this
module reproduces what ``json.Marshal``/``json.Encoder`` produce:

- compact, no spaces; object keys in the order given (Go structs) or sorted by their UTF-8
  bytes with ``sort_keys=True`` (Go maps);
- strings: ``\\"`` ``\\\\`` and the short forms ``\\n \\r \\t \\b \\f``; other bytes below
  0x20 as ``\\u00XX`` (lowercase hex); ``<`` ``>`` ``&`` as ``\\u003c \\u003e \\u0026``;
  U+2028/U+2029 as ``\\u2028``/``\\u2029``; lone surrogates (invalid UTF-8 in Go) as
  ``\\ufffd``; everything else raw UTF-8;
- float64: shortest round-trip digits, plain notation unless ``abs < 1e-6`` or
  ``abs >= 1e21``, then exponent form with Go's clean-up (``1e-7``, ``1.5e-10``, ``1e+21``);
  integral values have no ``.0``; NaN and ±Inf are errors (as in Go);
- float32 (:class:`GoFloat32` or ``numpy.float32``): the same with float32 shortest digits,
  which is what Ollama's ``float32`` parameters (``temperature 0.6``) encode as.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = ["GoFloat32", "GoJSONError", "go_json_dumps", "go_json_string"]


class GoJSONError(ValueError):
    """A value Go's encoder would refuse (NaN, Inf) or that has no JSON form."""


class GoFloat32(float):
    """A float that Go holds as ``float32``: encoded with float32 shortest digits.

    ``GoFloat32(0.6)`` encodes as ``0.6`` (like Go's ``float32(0.6)``); its ``float`` value is
    the float32 value widened to float64 (0.6000000238418579).
    """

    def __new__(cls, value: float | str | int = 0.0) -> GoFloat32:
        return super().__new__(cls, float(np.float32(value)))

    def __repr__(self) -> str:
        if not math.isfinite(self):
            return f"GoFloat32({float(self)!r})"
        return f"GoFloat32({_format_float(float(self), bits=32)})"


_ESCAPE_RE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')
_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    short = _SHORT.get(c)
    if short is not None:
        return short
    code = ord(c)
    if 0xD800 <= code <= 0xDFFF:
        return "\\ufffd"
    return f"\\u{code:04x}"


def go_json_string(text: str) -> str:
    """``text`` as a Go JSON string literal, quotes included."""
    return '"' + _ESCAPE_RE.sub(_escape_char, text) + '"'


def _digits_exponent(shortest: str) -> tuple[str, int]:
    """Digits (no leading/trailing zeros) and the exponent ``e`` so value = 0.DIGITS × 10^e."""
    _sign, digit_tuple, exp = Decimal(shortest).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    # value = int(digits) * 10**exp = 0.digits * 10**(exp + len(digits))
    return digits, exp + len(digits)


def _format_float(value: float, *, bits: int) -> str:
    if math.isnan(value) or math.isinf(value):
        raise GoJSONError(f"json: unsupported value: {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    if bits == 32:
        f32 = np.float32(value)
        if math.isinf(float(f32)):
            raise GoJSONError(f"json: unsupported value: {value!r} (overflows float32)")
        shortest = np.format_float_scientific(f32, unique=True, trim="-")
        absval = abs(f32)
        use_exp = bool(absval < np.float32(1e-6) or absval >= np.float32(1e21))
    else:
        shortest = repr(value)
        absval64 = abs(value)
        use_exp = absval64 < 1e-6 or absval64 >= 1e21
    sign = "-" if value < 0 else ""
    digits, point = _digits_exponent(shortest.lstrip("-"))
    if use_exp:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp10 = point - 1
        # Go's 'e' format writes at least two exponent digits, then encoding/json turns
        # e-07 into e-7 (only for negative exponents).
        exp_text = f"e-{-exp10}" if exp10 < 0 else f"e+{exp10:02d}"
        return f"{sign}{mantissa}{exp_text}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _encode(obj: Any, out: list[str], sort_keys: bool) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(go_json_string(obj))
    elif isinstance(obj, GoFloat32 | np.float32):
        out.append(_format_float(float(obj), bits=32))
    elif isinstance(obj, bool | np.bool_):
        out.append("true" if obj else "false")
    elif isinstance(obj, int | np.integer):
        out.append(str(int(obj)))
    elif isinstance(obj, float | np.floating):
        out.append(_format_float(float(obj), bits=64))
    elif isinstance(obj, Mapping):
        items = list(obj.items())
        for k, _ in items:
            if not isinstance(k, str):
                raise GoJSONError(f"json: object keys must be strings, got {type(k).__name__}")
        if sort_keys:
            items.sort(key=lambda kv: _sort_key(kv[0]))
        out.append("{")
        for i, (k, v) in enumerate(items):
            if i:
                out.append(",")
            out.append(go_json_string(k))
            out.append(":")
            _encode(v, out, sort_keys)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _encode(v, out, sort_keys)
        out.append("]")
    else:
        raise GoJSONError(f"json: unsupported type: {type(obj).__name__}")


def go_json_dumps(obj: Any, *, newline: bool, sort_keys: bool = False) -> bytes:
    """Encode ``obj`` exactly as Go's ``encoding/json`` would.

    ``newline=True`` is ``json.Encoder.Encode`` (appends ``\\n``), ``False`` is
    ``json.Marshal``. Dicts keep their insertion order (Go structs) unless ``sort_keys``
    (every dict is then a Go map, sorted by key bytes). Raises :class:`GoJSONError`.
    """
    out: list[str] = []
    _encode(obj, out, sort_keys)
    if newline:
        out.append("\n")
    return "".join(out).encode("utf-8")
