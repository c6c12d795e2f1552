"""A SentencePiece ``tokenizer.model`` read without the sentencepiece library: the few fields
of its protobuf that a GGUF vocabulary needs (pieces, scores, types, special ids, prefix)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelkit.errors import BuildError

_BPE = 2  # TrainerSpec.ModelType
_NORMAL = 1  # SentencePiece.Type; its values are GGUF's token types


@dataclass
class SentencePieceModel:
    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    model_type: int = 1  # UNIGRAM unless the trainer spec says otherwise
    special: dict[str, int] = field(default_factory=dict)  # unk/bos/eos/pad (-1: none)
    add_dummy_prefix: bool = True


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message: ints for varints, bytes otherwise."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield number, value
            continue
        size = {1: 8, 5: 4}.get(wire)
        if wire == 2:
            size, i = _varint(data, i)
        if size is None or i + size > len(data):
            raise ValueError(f"bad wire type {wire} or length")
        yield number, data[i : i + size]
        i += size


def _int32(value: int | bytes) -> int:
    assert isinstance(value, int)
    return value - (1 << 64) if value >= 1 << 63 else value


def _piece(data: bytes, model: SentencePieceModel) -> None:
    text, score, kind = "", 0.0, _NORMAL
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
        elif number == 2 and isinstance(value, bytes):
            (score,) = struct.unpack("<f", value)
        elif number == 3 and isinstance(value, int):
            kind = value
    model.pieces.append(text)
    model.scores.append(score)
    model.types.append(kind)


def _trainer(data: bytes, model: SentencePieceModel) -> None:
    model.special = {"unk": 0, "bos": 1, "eos": 2, "pad": -1}
    names = {40: "unk", 41: "bos", 42: "eos", 43: "pad"}
    for number, value in _fields(data):
        if number == 3 and isinstance(value, int):
            model.model_type = value
        elif number in names:
            model.special[names[number]] = _int32(value)


def _normalizer(data: bytes, model: SentencePieceModel) -> None:
    for number, value in _fields(data):
        if number == 3 and isinstance(value, int):
            model.add_dummy_prefix = bool(value)


def read_sentencepiece(path: Path) -> SentencePieceModel:
    """The pieces and settings of ``path``; a BuildError for what is not a BPE model."""
    model = SentencePieceModel()
    try:
        for number, value in _fields(path.read_bytes()):
            if not isinstance(value, bytes):
                continue
            if number == 1:
                _piece(value, model)
            elif number == 2:
                _trainer(value, model)
            elif number == 3:
                _normalizer(value, model)
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as err:
        raise BuildError(f"{path.name}: not a readable SentencePiece model: {err}") from None
    if not model.pieces:
        raise BuildError(f"{path.name}: not a SentencePiece model (no pieces)")
    if model.model_type != _BPE:
        raise BuildError(
            f"{path.name}: only BPE SentencePiece models convert (Llama, Gemma); "
            f"this one is of type {model.model_type}"
        )
    return model
