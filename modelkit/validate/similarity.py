"""Judge-free similarity scores between a model's answer and reference texts, in [0, 1]:
ROUGE-L and token F1 over lowercased words, or the cosine of two embeddings."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    # One row of the dynamic-programming table at a time: answers can be long.
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _f1(overlap: int, candidate: int, reference: int) -> float:
    if overlap == 0:
        return 1.0 if candidate == reference == 0 else 0.0
    precision, recall = overlap / candidate, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    """F-measure of the longest common word subsequence (word order matters)."""
    a, b = words(candidate), words(reference)
    return _f1(_lcs_length(a, b), len(a), len(b))


def token_f1(candidate: str, reference: str) -> float:
    """F1 of the words both texts share, counted with multiplicity (order does not matter)."""
    a, b = Counter(words(candidate)), Counter(words(reference))
    return _f1(sum((a & b).values()), sum(a.values()), sum(b.values()))


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine similarity, clamped to [0, 1] (opposite directions count as unrelated)."""
    dot = sum(x * y for x, y in zip(u, v, strict=True))
    norm = math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v))
    return max(0.0, min(1.0, dot / norm)) if norm else 0.0


TEXT_SCORERS = {"rouge_l": rouge_l, "token_f1": token_f1}
