"""The sequence slots of a generation context and what each keeps in the KV cache: which
slot a request gets, the prompt prefix it reuses (Ollama's prompt cache), context shifts.

Only the batcher's thread calls these (it owns the context), so nothing here locks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from typing import Any

from modelkit.runtime.engine.weights import llama

__all__ = ["SlotCache", "common_prefix", "image_boundary"]

log = logging.getLogger(__name__)


def common_prefix(a: Seq[int], b: Seq[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def image_boundary(cells: Seq[int], n: int) -> int:
    """``n`` moved back to the start of the image it falls inside, if it does: an image's
    cells (equal negative pseudo-tokens) go into the KV cache whole or not at all."""
    while 0 < n < len(cells) and cells[n] < 0 and cells[n - 1] == cells[n]:
        n -= 1
    return n


class SlotCache:
    """``n_slots`` sequence slots of one llama context; each remembers the tokens it holds
    in the KV cache while free, so the next request can start from them."""

    def __init__(self, ctx: Any, n_slots: int, *, cache_prompt: bool = True) -> None:
        self._ctx = ctx
        self.cache_prompt = cache_prompt
        self._free = list(range(n_slots))
        self._cached: list[list[int]] = [[] for _ in range(n_slots)]

    @property
    def free(self) -> int:
        return len(self._free)

    def take(self, tokens: Seq[int]) -> tuple[int, int]:
        """A free slot for a prompt of ``tokens`` (the one whose cache shares most with it)
        and how many of its first tokens the slot's KV cache already holds. At least the
        last prompt token is always decoded again: its logits are needed."""
        best = max(self._free, key=lambda i: common_prefix(self._cached[i], tokens))
        self._free.remove(best)
        common = 0
        if self.cache_prompt:
            common = min(common_prefix(self._cached[best], tokens), len(tokens) - 1)
            common = image_boundary(tokens, common)
        memory = self._ctx.memory
        if not llama().llama_memory_seq_rm(memory, best, common, -1):
            llama().llama_memory_seq_rm(memory, best, -1, -1)
            common = 0
        self._cached[best] = []
        return best, common

    def give_back(self, slot: int, cached: Seq[int]) -> None:
        """Free ``slot``; its KV cache holds ``cached`` (empty: drop what it holds)."""
        if not (self.cache_prompt and cached):
            llama().llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
            cached = []
        self._cached[slot] = list(cached)
        self._free.append(slot)

    def forget(self) -> None:
        """Drop what the free slots hold (someone else used the context meanwhile)."""
        for slot in self._free:
            llama().llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
            self._cached[slot] = []

    def shift(self, slot: int, in_cache: int, num_keep: int, n_ctx: int) -> int:
        """Make room in a full slot: drop the older half of the tokens after the first
        ``num_keep`` and move the rest down (Ollama's ``ShiftCacheSlot``). Returns how many
        tokens were dropped (0: the cache cannot shift, or there is nothing to drop)."""
        llama_cpp = llama()
        keep = min(max(num_keep, 0), n_ctx - 1)
        discard = (in_cache - keep) // 2
        memory = self._ctx.memory
        if discard <= 0 or not llama_cpp.llama_memory_can_shift(memory):
            return 0
        llama_cpp.llama_memory_seq_rm(memory, slot, keep, keep + discard)
        llama_cpp.llama_memory_seq_add(memory, slot, keep + discard, -1, -discard)
        log.debug("context shift: kept %d, dropped %d of %d tokens", keep, discard, in_cache)
        return discard
