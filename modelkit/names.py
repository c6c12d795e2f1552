"""Model names the way Ollama parses them (``[types/model/name.go]``, reference §3.5).

Grammar: ``[scheme://][host/][namespace/]model[:tag]``, parsed from the right. Missing parts
take the defaults ``registry.ollama.ai`` / ``library`` / ``latest`` (scheme ``https``). Every
part must then be valid:

- first character ``[A-Za-z0-9_]``;
- later characters ``[A-Za-z0-9_-]``, plus ``.`` and ``:`` for the host, ``.`` for the model
  and the tag (never for the namespace);
- lengths: host 1–350, namespace/model/tag 1–80.

Those character sets already keep a name inside the store (no ``/``, ``\\``, no part starting
with ``.`` so no ``.``/``..``, no absolute paths); :meth:`ModelName.manifest_relpath` still
re-checks, so a hand-built :class:`ModelName` can never point outside ``manifests/``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Literal

from modelkit.errors import ModelNameError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

_PartKind = Literal["host", "namespace", "model", "tag"]

_MAX_LEN: dict[_PartKind, int] = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_PART_RE: dict[_PartKind, re.Pattern[str]] = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"),
}
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _part_problem(kind: _PartKind, value: str) -> str | None:
    """Why ``value`` is not a valid ``kind`` part, or None when it is."""
    if value == "":
        return f"{kind} is empty"
    if len(value) > _MAX_LEN[kind]:
        return f"{kind} is longer than {_MAX_LEN[kind]} characters"
    if _PART_RE[kind].fullmatch(value) is None:
        if not (value[0].isascii() and (value[0].isalnum() or value[0] == "_")):
            return f"{kind} {value!r} must start with a letter, digit or underscore"
        return f"{kind} {value!r} has characters that are not allowed"
    return None


def _cut_last(text: str, sep: str) -> tuple[str, str | None]:
    """Split at the last ``sep``; an empty side becomes "" (reported as missing)."""
    i = text.rfind(sep)
    if i < 0:
        return text, None
    return text[:i], text[i + len(sep) :]


@dataclass(frozen=True)
class ModelName:
    """A fully qualified, valid model name. Construction validates every part."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = DEFAULT_SCHEME

    def __post_init__(self) -> None:
        checks: tuple[tuple[_PartKind, str], ...] = (
            ("host", self.host),
            ("namespace", self.namespace),
            ("model", self.model),
            ("tag", self.tag),
        )
        for kind, value in checks:
            problem = _part_problem(kind, value)
            if problem is not None:
                raise ModelNameError(f"invalid model name: {self._text()} ({problem})")
        if _SCHEME_RE.fullmatch(self.scheme) is None:
            raise ModelNameError(f"invalid model name: {self._text()} (bad scheme)")

    def _text(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    # -- parsing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse ``[scheme://][host/][namespace/]model[:tag]`` with Ollama's defaults.

        Raises :class:`ModelNameError` (``invalid model name: <text> (<reason>)``).
        """
        if not isinstance(text, str):
            raise ModelNameError(f"invalid model name: {text!r} (not a string)")

        def fail(reason: str) -> ModelNameError:
            return ModelNameError(f"invalid model name: {text} ({reason})")

        if text == "":
            raise fail("the name is empty")
        if "@" in text:
            raise fail("digests (@) are not supported")

        rest = text
        tag: str | None = None
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag = _cut_last(rest, ":")
            if tag == "":
                raise fail("tag is empty")
        rest, model = _cut_last(rest, "/")
        namespace: str | None = None
        host: str | None = None
        scheme = DEFAULT_SCHEME
        if model is None:
            model = rest
        else:
            if model == "":
                raise fail("model is empty")
            rest, namespace = _cut_last(rest, "/")
            if namespace is None:
                namespace = rest
            else:
                if namespace == "":
                    raise fail("namespace is empty")
                head, sep, tail = rest.partition("://")
                if sep:
                    if head != "" and _SCHEME_RE.fullmatch(head) is None:
                        raise fail("bad scheme")
                    scheme, host = head or DEFAULT_SCHEME, tail
                else:
                    host = rest
                if host == "":
                    raise fail("host is empty")
            if namespace == "":
                raise fail("namespace is empty")
        if model == "":
            raise fail("model is empty")

        parts: dict[_PartKind, str] = {
            "host": host if host is not None else DEFAULT_HOST,
            "namespace": namespace if namespace is not None else DEFAULT_NAMESPACE,
            "model": model,
            "tag": tag if tag is not None else DEFAULT_TAG,
        }
        for kind, value in parts.items():
            problem = _part_problem(kind, value)
            if problem is not None:
                raise fail(problem)
        return cls(
            host=parts["host"],
            namespace=parts["namespace"],
            model=parts["model"],
            tag=parts["tag"],
            scheme=scheme,
        )

    @classmethod
    def is_valid(cls, text: str) -> bool:
        """True when :meth:`parse` accepts ``text``."""
        try:
            cls.parse(text)
        except ModelNameError:
            return False
        return True

    @classmethod
    def from_manifest_relpath(cls, parts: Sequence[str] | PurePath) -> ModelName:
        """The name stored at ``manifests/<host>/<namespace>/<model>/<tag>``.

        ``parts`` is the path below ``manifests/`` (a path or its components); exactly four
        components, none of them ``.``/``..``. Raises :class:`ModelNameError`.
        """
        comps = tuple(parts.parts) if isinstance(parts, PurePath) else tuple(parts)
        shown = "/".join(comps)
        if len(comps) != 4:
            raise ModelNameError(
                f"invalid model name: {shown} (a manifest path has exactly 4 parts)"
            )
        if any(c in ("", ".", "..") or "/" in c or "\\" in c for c in comps):
            raise ModelNameError(f"invalid model name: {shown} (bad path component)")
        return cls(host=comps[0], namespace=comps[1], model=comps[2], tag=comps[3])

    # -- presentation --------------------------------------------------------------------

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def display(self) -> str:
        """Ollama's shortest display form, always with ``:tag``.

        ``model:tag`` on the default host and namespace, ``namespace/model:tag`` on the
        default host, else ``host/namespace/model:tag``.
        """
        if self.host.casefold() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.casefold() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def manifest_relpath(self) -> PurePosixPath:
        """``host/namespace/model/tag``: the manifest's path below ``manifests/``."""
        comps = (self.host, self.namespace, self.model, self.tag)
        for c in comps:  # unreachable for a validated name; kept as a guard
            if c in ("", ".", "..") or "/" in c or "\\" in c or "\x00" in c:
                raise ModelNameError(f"invalid model name: {self} (unsafe path component)")
        return PurePosixPath(*comps)

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)``."""
        return (self.host, self.namespace, self.model, self.tag)

    def matches(self, other: ModelName) -> bool:
        """Same name ignoring case (Ollama's ``EqualFold`` on each part; scheme ignored)."""
        return all(
            a.casefold() == b.casefold() for a, b in zip(self.parts, other.parts, strict=True)
        )

    def with_tag(self, tag: str) -> ModelName:
        """The same name with another tag (validated)."""
        return ModelName(self.host, self.namespace, self.model, tag, self.scheme)
