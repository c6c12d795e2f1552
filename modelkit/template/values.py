"""How Python values look to a Go template: kinds, truth, Go type names, JSON, struct fields.

The evaluator sees plain Python values through Go's eyes:

========================  ==========================================================
Python                    Go
========================  ==========================================================
``None``                  nil (an unset ``any``)
``bool``/``int``/``float`` bool / int / float64
``str``                   string
``list``/``tuple``        ``[]any``; ``bytes`` is ``[]byte``
``Mapping``               ``map[string]any``: fields are keys, a missing key is nil
                          (Ollama's ``missingkey=zero``), ranged in sorted key order
:class:`GoStruct`         a struct: a field it lacks is an execution error
========================  ==========================================================

A value with a ``go_string()`` method is a Go ``fmt.Stringer``: printing it uses that text
(Ollama's tool lists, tool-call arguments and property maps print as JSON this way; see
:class:`JSONMap` and :class:`JSONList`). A value with a ``go_json()`` method supplies its own
JSON form (a tree of dicts/lists/scalars, emitted in the order given).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from modelkit.store.gojson import GoJSONError, go_json_dumps

__all__ = [
    "MISSING",
    "GoJSONError",
    "GoStruct",
    "JSONList",
    "JSONMap",
    "go_json",
    "go_type_name",
    "is_true",
    "json_tree",
    "kind",
    "sorted_items",
    "stringer_text",
]


class _Missing:
    """The absent final argument of a pipeline command (Go's ``missingVal``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class GoStruct:
    """A Python object that templates see as a Go struct with exported fields.

    Subclasses list their fields in ``GO_FIELDS`` as ``(GoName, attribute)`` pairs in
    declaration order (the order ``{{ . }}`` prints them in). Override :meth:`go_field` to
    hand a template a converted value. ``GO_TYPE`` is the type name used in error messages.
    """

    GO_FIELDS: ClassVar[tuple[tuple[str, str], ...]] = ()
    GO_TYPE: ClassVar[str] = ""

    def go_field(self, name: str) -> Any:
        """The value of Go field ``name``; ``KeyError`` when the struct has no such field."""
        for go_name, attr in self.GO_FIELDS:
            if go_name == name:
                return getattr(self, attr)
        raise KeyError(name)

    def go_field_items(self) -> list[tuple[str, Any]]:
        """``(GoName, value)`` for every field, in declaration order."""
        return [(name, self.go_field(name)) for name, _attr in self.GO_FIELDS]

    def go_type_name(self) -> str:
        """The type's name in messages (``can't evaluate field X in type T``)."""
        return self.GO_TYPE or type(self).__name__

    def go_json(self) -> Any:
        """JSON tree of a struct without json tags: every field, under its Go name."""
        return {name: json_tree(value) for name, value in self.go_field_items()}


class JSONMap(dict[str, Any]):
    """A Go map whose ``String()`` is its JSON (Ollama's ``templateArgs``, ``templateProperties``).

    It ranges and prints inside ``fmt`` like any map, but ``{{ . }}`` prints ``{"a":1}``.
    """

    def go_string(self) -> str:
        """Go JSON of the map (sorted keys)."""
        return go_json(self, on_error="")


class JSONList(list[Any]):
    """A Go slice whose ``String()`` is its Go JSON (Ollama's ``templateTools``).

    ``nil=True`` marks a nil slice, which prints as ``null`` (an empty one prints ``[]``).
    """

    def __init__(self, items: Iterable[Any] = (), *, nil: bool = False) -> None:
        super().__init__(items)
        self.nil = nil and not self

    def go_string(self) -> str:
        """Go JSON of the list (``null`` for a nil slice)."""
        return go_json(self, on_error="")

    def go_json(self) -> Any:
        """``None`` for a nil slice, else the list's JSON tree."""
        return None if self.nil else [json_tree(v) for v in self]


def kind(value: Any) -> str:
    """Go's reflect kind of ``value``, coarsely: invalid, bool, int, float, complex, string,
    slice, map, struct or func."""
    if value is None or value is MISSING:
        return "invalid"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, complex):
        return "complex"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple | bytes | bytearray):
        return "slice"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, GoStruct):
        return "struct"
    if callable(value):
        return "func"
    return "struct"


_SCALAR_TYPE_NAMES = {
    "bool": "bool",
    "int": "int",
    "float": "float64",
    "complex": "complex128",
    "string": "string",
    "map": "map[string]interface {}",
    "func": "func",
}


def go_type_name(value: Any) -> str:
    """The Go type name ``fmt`` and error messages use for ``value``."""
    if value is None:
        return "<nil>"
    if isinstance(value, GoStruct):
        return value.go_type_name()
    if isinstance(value, bytes | bytearray):
        return "[]uint8"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    k = kind(value)
    return _SCALAR_TYPE_NAMES.get(k, type(value).__name__)


def is_true(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings/slices/maps are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | complex):
        return value != 0
    if isinstance(value, str | bytes | bytearray | list | tuple | Mapping):
        return len(value) > 0
    return True


def _key_order(key: Any) -> tuple[int, Any]:
    if isinstance(key, bool):
        return (0, key)
    if isinstance(key, int | float):
        return (1, key)
    if isinstance(key, str):
        return (2, key.encode("utf-8", "surrogatepass"))
    return (3, str(key))


def sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """The map's items in Go's order (``fmt`` and ``range`` sort map keys)."""
    return sorted(mapping.items(), key=lambda kv: _key_order(kv[0]))


def stringer_text(value: Any) -> str | None:
    """``value.String()`` when ``value`` is a Go ``fmt.Stringer``, else ``None``."""
    method: Callable[[], str] | None = getattr(value, "go_string", None)
    if method is None or not callable(method):
        return None
    return method()


def json_tree(value: Any) -> Any:
    """``value`` as the tree Go's ``json.Marshal`` would encode, dicts in output order.

    Maps are sorted by key bytes (Go maps), :class:`GoStruct` values use ``go_json()``,
    ``bytes`` become base64 strings. Raises :class:`GoJSONError` for values JSON cannot hold.
    """
    method = getattr(value, "go_json", None)
    if method is not None and callable(method):
        return method()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_tree(v) for k, v in sorted_items(value)}
    if isinstance(value, list | tuple):
        return [json_tree(v) for v in value]
    raise GoJSONError(f"json: unsupported type: {go_type_name(value)}")


def go_json(value: Any, *, on_error: str | None = None) -> str:
    """Go ``json.Marshal(value)`` as text (HTML-escaped, no newline).

    On a value Go cannot encode, returns ``on_error`` when given (Ollama's ``json`` function
    drops the error and prints ``""``), else raises :class:`GoJSONError`.
    """
    try:
        return go_json_dumps(json_tree(value), newline=False).decode("utf-8")
    except GoJSONError:
        if on_error is None:
            raise
        return on_error
