"""Image paths typed into a ``modelkit run`` prompt, found and read as ``ollama run`` does:
the paths leave the text, and the files' bytes go into the request's ``images``."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from modelkit.errors import ModelkitError

#: Ollama's pattern (``cmd/interactive.go``), images only: it over-matches on purpose
#: (spaces included) and relies on the file-existence check to drop what is no path.
#: ASCII, because Go's ``\b`` knows only ASCII word characters.
IMAGE_PATH_RE = re.compile(
    r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:jpg|jpeg|png|webp)\b", re.ASCII
)

#: Ollama's limit on one file.
MAX_IMAGE_BYTES = 100 * 1024 * 1024

# The shell escapes Ollama undoes (a backslash before one of these), in one pass.
_SHELL_ESCAPE_RE = re.compile(r"\\([ ()\[\]{}$&;'\\*?~])")

# Enough of Go's http.DetectContentType to accept what Ollama accepts and to name the
# commonest refusals the same way.
_SIGNATURES: tuple[tuple[bytes, bytes, str], ...] = (
    (b"\xff\xd8\xff", b"\xff\xff\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", b"\xff" * 8, "image/png"),
    (b"RIFF\0\0\0\0WEBPVP", b"\xff\xff\xff\xff\0\0\0\0\xff\xff\xff\xff\xff\xff", "image/webp"),
    (b"GIF87a", b"\xff" * 6, "image/gif"),
    (b"GIF89a", b"\xff" * 6, "image/gif"),
    (b"BM", b"\xff\xff", "image/bmp"),
    (b"%PDF-", b"\xff" * 5, "application/pdf"),
)
_ACCEPTED = ("image/jpeg", "image/png", "image/webp")
_BINARY_BYTES = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])


class ImageFileError(ModelkitError):
    """An image path in a prompt names a file that cannot be sent (wrong type, too big)."""


def unescape_path(raw: str) -> str:
    """Undo the shell escapes a terminal adds to a dragged-in path (``\\ `` → space, ...)."""
    return _SHELL_ESCAPE_RE.sub(r"\1", raw)


def image_path_candidates(text: str) -> list[str]:
    """Every stretch of ``text`` that Ollama's pattern takes for an image path, as typed."""
    return IMAGE_PATH_RE.findall(text)


def extract_images(text: str) -> tuple[str, list[Path]]:
    """``text`` without the paths of the image files that exist, and those paths in order.

    A path that names no file stays in the text.  Each found path is removed wherever it
    occurs, also in single quotes (and in quotes with its escapes undone); the rest is
    stripped.  A path typed twice gives the image twice, as in Ollama.
    """
    paths: list[Path] = []
    for raw in image_path_candidates(text):
        path = unescape_path(raw)
        if not Path(path).exists():
            continue
        for form in (f"'{path}'", f"'{raw}'", raw):
            text = text.replace(form, "")
        paths.append(Path(path))
    return text.strip(), paths


def names_image_path(line: str) -> bool:
    """Whether the first word of ``line`` starts an image path (``/tmp/cat.png what?``):
    such a ``/`` line is a prompt, not a command."""
    words = line.split()
    return bool(words) and any(c.startswith(words[0]) for c in image_path_candidates(line))


def sniff_content_type(head: bytes) -> str:
    """The content type of a file from its first bytes, as Go's DetectContentType names it."""
    for pattern, mask, content_type in _SIGNATURES:
        if len(head) >= len(pattern) and all(
            b & m == p for b, m, p in zip(head, mask, pattern, strict=False)
        ):
            return content_type
    if any(b in _BINARY_BYTES for b in head[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def read_image(path: Path) -> bytes:
    """The bytes of an image file named in a prompt; refuses what Ollama refuses."""
    try:
        with path.open("rb") as f:
            content_type = sniff_content_type(f.read(512))
            if content_type not in _ACCEPTED:
                raise ImageFileError(f"invalid file type: {content_type}")
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise ImageFileError("file size exceeds maximum limit (100MB)")
            f.seek(0)
            return f.read()
    except OSError as err:
        raise ImageFileError(f"{path}: {err.strerror or err}") from None


def encode_image(data: bytes) -> str:
    """An image as the API carries it: standard base64 (Go's []byte in JSON)."""
    return base64.b64encode(data).decode("ascii")
