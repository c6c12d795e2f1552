"""The tokenizer carried into GGUF metadata: ``tokenizer.json`` (byte-level BPE → ``gpt2``,
byte-fallback BPE → ``llama``) or ``tokenizer.model``, special tokens, the chat template."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import TokenType

from modelkit.build.convert.hf_config import HFConfig, read_optional_json
from modelkit.build.convert.sentencepiece import read_sentencepiece
from modelkit.errors import BuildError

SPECIAL_KINDS = ("bos", "eos", "unk", "pad")

# The split regexes of known byte-level BPE tokenizers → llama.cpp's pre-tokenizer names.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = _LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
KNOWN_PRE = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_SHIFTED_SPACE = chr(ord(" ") + 256)


@dataclass
class Vocab:
    """Everything ``tokenizer.ggml.*`` holds for one model."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    pre: str | None
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special: dict[str, int] = field(default_factory=dict)
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    named_templates: dict[str, str] = field(default_factory=dict)


def _merge_text(merge: Any) -> str:
    if isinstance(merge, str):
        return merge
    if isinstance(merge, list) and len(merge) == 2:
        # Newer tokenizers store pairs; llama.cpp wants "a b" with inner spaces shifted.
        left, right = str(merge[0]), str(merge[1])
        return f"{left.replace(' ', _SHIFTED_SPACE)} {right.replace(' ', _SHIFTED_SPACE)}"
    raise BuildError(f"tokenizer.json: unknown merge format {merge!r}")


def _token_content(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("content"), str):
        return str(entry["content"])
    return None


def _split_regexes(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [r for child in node.get("pretokenizers", []) for r in _split_regexes(child)]
    pattern = node.get("pattern")
    if node.get("type") == "Split" and isinstance(pattern, dict) and "Regex" in pattern:
        return [str(pattern["Regex"])]
    return []


def _pre_tokenizer(tokenizer: dict[str, Any], default: str) -> str:
    for regex in _split_regexes(tokenizer.get("pre_tokenizer")):
        if regex in KNOWN_PRE:
            return KNOWN_PRE[regex]
    node = tokenizer.get("pre_tokenizer")
    if isinstance(node, dict) and node.get("type") == "ByteLevel" and node.get("use_regex", True):
        return "gpt2"
    return default


def _adds_space_prefix(tokenizer: dict[str, Any]) -> bool:
    """Whether text gets a leading "▁" (Llama 2's Prepend normalizer or a Metaspace)."""

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Prepend" and node.get("prepend") == "▁":
                return True
            if node.get("type") == "Metaspace":
                return bool(node.get("add_prefix_space", node.get("prepend_scheme") != "never"))
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(tokenizer.get("normalizer")) or walk(tokenizer.get("pre_tokenizer"))


def _spm_scores(tokens: list[str], merges: list[str]) -> list[float]:
    """llama.cpp's SentencePiece tokenizer merges by score: a merge's rank, negated."""
    rank: dict[str, int] = {}
    for i, merge in enumerate(merges):
        left, _, right = merge.partition(" ")
        rank.setdefault((left + right).replace(_SHIFTED_SPACE, " "), i)
    floor = -float(len(merges) + 1)
    return [-float(rank[t]) if t in rank else (0.0 if len(t) <= 1 else floor) for t in tokens]


def _chat_templates(folder: Path, config: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    value: Any = config.get("chat_template")
    if value is None and (folder / "chat_template.jinja").is_file():
        value = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    elif value is None:
        value = read_optional_json(folder / "chat_template.json").get("chat_template")
    if isinstance(value, str):
        return value, {}
    if isinstance(value, list):
        named = {
            str(t["name"]): str(t["template"])
            for t in value
            if isinstance(t, dict) and "name" in t and "template" in t
        }
        return named.pop("default", None), named
    return None, {}


def _template_adds(
    tokenizer: dict[str, Any], bos: str | None, eos: str | None
) -> tuple[bool | None, bool | None]:
    """add_bos / add_eos as the post-processor's single-sequence template says."""
    post = tokenizer.get("post_processor")
    if not isinstance(post, dict):
        return None, None
    for processor in post.get("processors", [post]):
        if isinstance(processor, dict) and processor.get("type") == "TemplateProcessing":
            single = processor.get("single", [])
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
            return first is not None and first == bos, last is not None and last == eos
    return None, None


@dataclass
class _Source:
    """A tokenizer file's own vocabulary, before padding and special tokens."""

    model: str
    pre: str | None
    texts: dict[int, str]
    types: dict[int, int]
    merges: list[str]
    scores: dict[int, float] | None
    add_space_prefix: bool | None
    special: dict[str, int] = field(default_factory=dict)  # ids the file itself names
    tokenizer_json: dict[str, Any] = field(default_factory=dict)
    rank_merges: list[str] = field(default_factory=list)  # SentencePiece-style: for scores


def _from_tokenizer_json(path: Path, default_pre: str) -> _Source:
    tokenizer = read_optional_json(path)
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE":
        raise BuildError(f"tokenizer.json: unsupported tokenizer model {model.get('type')!r}")
    spm = bool(model.get("byte_fallback"))
    texts = {int(v): str(k) for k, v in dict(model.get("vocab", {})).items()}
    types = {
        i: int(TokenType.BYTE if spm and _BYTE_TOKEN.fullmatch(t) else TokenType.NORMAL)
        for i, t in texts.items()
    }
    for entry in tokenizer.get("added_tokens", []):
        if not isinstance(entry, dict):
            continue
        i, text = int(entry["id"]), str(entry["content"])
        texts[i] = text
        if not (spm and _BYTE_TOKEN.fullmatch(text)):
            special = entry.get("special")
            types[i] = int(TokenType.CONTROL if special else TokenType.USER_DEFINED)
    merges = [_merge_text(m) for m in model.get("merges", [])]
    ids = {t: i for i, t in texts.items()}
    unk = model.get("unk_token")
    return _Source(
        model="llama" if spm else "gpt2",
        pre=None if spm else _pre_tokenizer(tokenizer, default_pre),
        texts=texts,
        types=types,
        merges=[] if spm else merges,
        scores=None,  # made from the merges once the token list is complete
        add_space_prefix=_adds_space_prefix(tokenizer) if spm else None,
        special={"unk": ids[unk]} if isinstance(unk, str) and unk in ids else {},
        tokenizer_json=tokenizer,
        rank_merges=merges if spm else [],
    )


def _from_sentencepiece(path: Path) -> _Source:
    model = read_sentencepiece(path)
    return _Source(
        model="llama",
        pre=None,
        texts=dict(enumerate(model.pieces)),
        types=dict(enumerate(model.types)),
        merges=[],
        scores=dict(enumerate(model.scores)),
        add_space_prefix=model.add_dummy_prefix,
        special={k: v for k, v in model.special.items() if 0 <= v < len(model.pieces)},
    )


def _source(folder: Path, default_pre: str) -> _Source:
    """tokenizer.json when there is one (Ollama's and llama.cpp's choice for BPE models),
    else a SentencePiece tokenizer.model."""
    if (folder / "tokenizer.json").is_file():
        return _from_tokenizer_json(folder / "tokenizer.json", default_pre)
    if (folder / "tokenizer.model").is_file():
        return _from_sentencepiece(folder / "tokenizer.model")
    raise BuildError(f"{folder}: no tokenizer.json or tokenizer.model")


def _apply_added_decoder(source: _Source, tconfig: dict[str, Any]) -> None:
    """tokenizer_config.json's ``added_tokens_decoder`` names and types tokens too."""
    decoder = tconfig.get("added_tokens_decoder")
    if not isinstance(decoder, dict):
        return
    for key, entry in decoder.items():
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and key.isdigit():
            i = int(key)
            if i not in source.texts or source.types.get(i) != int(TokenType.BYTE):
                source.texts[i] = str(entry["content"])
                special = entry.get("special")
                source.types[i] = int(TokenType.CONTROL if special else TokenType.USER_DEFINED)


def _special_ids(
    source: _Source, tconfig: dict[str, Any], config: HFConfig, total: int
) -> dict[str, int]:
    """bos/eos/unk/pad: tokenizer_config.json, then config.json and generation_config.json,
    then what the tokenizer file itself says."""
    ids = {t: i for i, t in source.texts.items()}
    special: dict[str, int] = {}
    for kind in SPECIAL_KINDS:
        name = _token_content(tconfig.get(f"{kind}_token"))
        if name is not None and name in ids:
            special[kind] = ids[name]
    for values in (config.values, config.generation, source.special):
        for kind in SPECIAL_KINDS:
            value = values.get(f"{kind}_token_id", values.get(kind))
            if isinstance(value, list) and value:
                value = value[0]
            if kind not in special and isinstance(value, int) and 0 <= value < total:
                special[kind] = value
    return special


def load_vocab(folder: Path, config: HFConfig, *, default_pre: str, default_add_bos: bool) -> Vocab:
    """The vocabulary of ``folder``, padded to the model's ``vocab_size``."""
    tconfig = read_optional_json(folder / "tokenizer_config.json")
    source = _source(folder, default_pre)
    _apply_added_decoder(source, tconfig)
    size = max(source.texts, default=-1) + 1
    want = config.get("vocab_size")
    if isinstance(want, int) and want < size:
        raise BuildError(f"the tokenizer has {size} tokens but config.json vocab_size is {want}")
    total = want if isinstance(want, int) else size
    tokens = [source.texts.get(i, f"[PAD{i}]") for i in range(total)]
    types = [source.types.get(i, int(TokenType.UNUSED)) for i in range(total)]
    special = _special_ids(source, tconfig, config, total)
    unk = special.get("unk")
    if source.model == "llama" and unk is not None and types[unk] == TokenType.NORMAL:
        types[unk] = int(TokenType.UNKNOWN)  # a plain vocabulary entry named as unk
    scores = None
    if source.scores is not None:
        scores = [source.scores.get(i, -1000.0) for i in range(total)]
    elif source.model == "llama":
        scores = _spm_scores(tokens, source.rank_merges)

    bos_text = tokens[special["bos"]] if "bos" in special else None
    eos_text = tokens[special["eos"]] if "eos" in special else None
    tmpl_bos, tmpl_eos = _template_adds(source.tokenizer_json, bos_text, eos_text)
    add_bos = tconfig.get("add_bos_token")
    add_eos = tconfig.get("add_eos_token")
    chat_template, named = _chat_templates(folder, tconfig)
    return Vocab(
        model=source.model,
        pre=source.pre,
        tokens=tokens,
        types=types,
        scores=scores,
        merges=source.merges,
        special=special,
        add_bos=bool(
            add_bos
            if isinstance(add_bos, bool)
            else (default_add_bos if tmpl_bos is None else tmpl_bos)
        ),
        add_eos=bool(add_eos if isinstance(add_eos, bool) else tmpl_eos),
        add_space_prefix=source.add_space_prefix,
        chat_template=chat_template,
        named_templates=named,
    )
