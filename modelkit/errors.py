"""The exception tree: one class per domain, each carrying what a person needs to act.

The CLI and HTTP edges turn these into messages and exit codes / status codes; nothing below
them prints. Tree::

    ModelkitError
    ├── ModelfileError      bad Modelfile text (file:line:col, the line, a caret)
    ├── ModelNameError      a model name Ollama would reject
    ├── StoreError          the blob/manifest store (missing model, digest mismatch, ...)
    │   ├── ModelNotFoundError
    │   ├── DigestMismatchError
    │   ├── InvalidDigestError
    │   └── BlobNotFoundError
    ├── BuildError          a build that cannot proceed (missing FROM, unsupported source)
    ├── ImageError          a container image that cannot be assembled or written
    ├── DeployError         deployment files that cannot be generated as asked
    ├── ApiKeyError         an API key setting or key file that cannot be read
    └── CheckError          a built model that fails its smoke check or --test spec
"""

from __future__ import annotations


class ModelkitError(Exception):
    """Base of every error modelkit raises on purpose."""


class ModelfileError(ModelkitError):
    """A Modelfile that cannot be parsed or typed.

    ``line``/``col`` are 1-based; ``source_line`` is the offending line's text (without its
    newline) when known, used to draw a caret under ``col``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "<string>",
        line: int = 0,
        col: int = 0,
        source_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        self.source_line = source_line

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.path}: {self.message}"
        head = f"{self.path}:{self.line}:{max(self.col, 1)}: {self.message}"
        if self.source_line is None:
            return head
        caret = " " * (max(self.col, 1) - 1) + "^"
        return f"{head}\n    {self.source_line}\n    {caret}"


class ModelNameError(ModelkitError):
    """A model name that is not valid (Ollama's text: ``invalid model name``)."""


class StoreError(ModelkitError):
    """Something in the Ollama-format store is missing, corrupt or not allowed."""


class ModelNotFoundError(StoreError):
    """A model name with no manifest in the store."""


class DigestMismatchError(StoreError):
    """Bytes whose sha256 is not the digest they were stored or sent under."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f'digest mismatch, expected "{expected}", got "{got}"')
        self.expected = expected
        self.got = got


class BuildError(ModelkitError):
    """A build that cannot go on: a FROM that does not resolve, an unsupported source, ..."""


class InvalidDigestError(StoreError):
    """A digest that is not ``sha256:<64 hex>`` (Ollama's text: ``invalid digest format``)."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"invalid digest format: {digest!r}")
        self.digest = digest


class BlobNotFoundError(StoreError):
    """A digest with no blob file in the store (Ollama: ``blob "<digest>" not found``)."""

    def __init__(self, digest: str) -> None:
        super().__init__(f'blob "{digest}" not found')
        self.digest = digest


class TemplateError(ModelkitError):
    """A prompt template (Go ``text/template`` or Jinja2) that cannot be parsed or executed.

    ``line`` is 1-based; ``col`` is, as in Go's ``text/template`` errors, the 0-based byte
    offset of the offending node within that line (``-1`` when unknown); ``name`` is the
    template's name (``""`` for a model's TEMPLATE, as in Ollama). ``str()`` reads like Go::

        template: :1:3: executing "" at <.Foo>: can't evaluate field Foo in type Message
        template: :1:11: unclosed action
    """

    def __init__(self, message: str, *, name: str = "", line: int = 0, col: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.line = line
        self.col = col

    def __str__(self) -> str:
        if self.line <= 0:
            return f"template: {self.name}: {self.message}" if self.name else self.message
        where = f"{self.name}:{self.line}" + (f":{self.col}" if self.col >= 0 else "")
        return f"template: {where}: {self.message}"


class InferenceError(ModelkitError):
    """A model that cannot be loaded or run (bad weights or adapter, a failed decode, ...)."""


class CheckError(ModelkitError):
    """A model that fails a check a build runs before tagging it (the smoke check, or a
    ``--test`` spec); the build writes no tag."""


class RequestError(InferenceError):
    """A request the runtime refuses as given (a bad format, a prompt too long, a missing
    capability): the client must change it (HTTP 400)."""


class RegistryError(ModelkitError):
    """A registry request that failed (network, HTTP status, auth) or sent bad data.

    ``url`` is the request's URL when known, ``status`` its HTTP status (0 when no response).
    """

    def __init__(self, message: str, *, url: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ImageError(ModelkitError):
    """A container image that cannot be assembled or written: a bad image reference or output,
    a runtime (base) image that cannot be read, no Docker daemon for ``--load``, ..."""


class DeployError(ModelkitError):
    """Deployment files that cannot be generated as asked: a model source the target or the
    Kubernetes version does not support, a missing ``--model-image``, a bad image reference,
    a model whose GGUF lacks what resource sizing needs, an output folder that cannot be
    written, ..."""


class ApiKeyError(ModelkitError):
    """An API key setting or key file that cannot be read (``MODELKIT_API_KEYS_FILE``), or a
    key that cannot be added as asked."""
