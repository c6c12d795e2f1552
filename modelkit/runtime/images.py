"""Images sent with a request: base64 or raw bytes checked and decoded to RGB pixels (JPEG, PNG
and WebP, with Pillow), each named by the sha256 of its bytes (the prompt cache's key).

The server checks every image before a model loads, so a bad one is a 400 naming the problem;
the runner decodes it again to hand llama.cpp's projector the pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from modelkit.errors import RequestError
from modelkit.store import sha256_digest

__all__ = [
    "FORMATS",
    "IMAGE_TAG",
    "DecodedImage",
    "check_image",
    "decode_image",
    "image_bytes",
    "image_digest",
]

IMAGE_TAG = re.compile(r"\[img-(\d+)\]")
"""Where image N of a request goes in its rendered prompt (Ollama's tag)."""

FORMATS = ("JPEG", "PNG", "WEBP")
"""The image formats accepted, as Pillow names them (Ollama takes these three)."""


@dataclass(frozen=True)
class DecodedImage:
    """An image's pixels (``width`` × ``height`` RGB, row by row) and the digest of its file."""

    width: int
    height: int
    rgb: bytes
    digest: str


def image_bytes(image: str | bytes, index: int = 0) -> bytes:
    """The bytes of one image of a request: base64 text (standard alphabet) or raw bytes."""
    if isinstance(image, bytes):
        return image
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"image {index}: invalid base64 image data") from None


def _open(data: bytes, index: int) -> object:
    from PIL import Image  # imported here: text-only servers never pay for it

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.format not in FORMATS:
                raise RequestError(
                    f"image {index}: unsupported image format {img.format or 'unknown'} "
                    "(JPEG, PNG or WebP expected)"
                )
            img.load()
        except RequestError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise RequestError(f"image {index}: too many pixels ({err})") from None
        except Exception as err:  # Pillow raises many types for truncated or corrupt files
            raise RequestError(f"image {index}: cannot decode image: {err}") from None
    return img


def _read(image: str | bytes, index: int) -> tuple[bytes, object]:
    data = image_bytes(image, index)
    if not data:
        raise RequestError(f"image {index}: empty image data")
    return data, _open(data, index)


def check_image(image: str | bytes, index: int = 0) -> bytes:
    """The image's bytes once they decode as a JPEG, PNG or WebP (else :class:`RequestError`)."""
    return _read(image, index)[0]


def image_digest(data: bytes) -> str:
    """``sha256:<hex>`` of an image's file: what the caches know it by."""
    return sha256_digest(data)


def decode_image(image: str | bytes, index: int = 0, *, digest: str | None = None) -> DecodedImage:
    """The image's RGB pixels (transparency dropped, palettes expanded) and digest (given
    when the caller has hashed the file already)."""
    data, img = _read(image, index)
    rgb = img.convert("RGB")  # type: ignore[attr-defined]
    return DecodedImage(
        width=rgb.width,
        height=rgb.height,
        rgb=rgb.tobytes(),
        digest=digest if digest is not None else image_digest(data),
    )
