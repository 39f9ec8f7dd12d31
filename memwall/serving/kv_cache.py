"""The paged KV cache (Kwon et al. 2023, PagedAttention): fixed-size blocks of positions,
allocated to sequences as they grow and returned when they finish or are preempted.

The blocks live in the first level of the placement's KV fill order (`placement.kv_cache`),
in the room left there after the weights and the activation workspace: that is where attention
reads them. The next level of the fill order, if there is one, is the swap area: a preempted
sequence's blocks are copied there (and back before it runs again) when preemption swaps
rather than recomputes, as vLLM swaps to host memory. A block holds `block_tokens` positions of
every layer: block_tokens x the model's KV bytes per position (one device's share under tensor
parallelism; a sliding window's layers are counted at every position, as a block table holds
them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class PagedKVCache:
    """Block accounting: who holds how many blocks, in the cache and in the swap area.

    >>> kv = PagedKVCache(block_tokens=16, block_bytes=1024, blocks=4)
    >>> kv.fits(0, 40), kv.grow(7, 40), kv.free_blocks, kv.used_bytes
    (True, True, 1, 3072)
    >>> kv.grow(7, 65), kv.release(7), kv.free_blocks
    (False, 3, 4)
    """

    block_tokens: int  # positions per block
    block_bytes: int  # bytes per block (all layers)
    blocks: int  # blocks in the cache
    swap_blocks: int = 0  # blocks in the swap area (0: preemption recomputes)

    def __post_init__(self) -> None:
        self.held: dict[int, int] = {}  # sequence -> blocks in the cache
        self.swapped: dict[int, int] = {}  # sequence -> blocks in the swap area
        self.used = 0  # blocks held in the cache
        self.swap_used = 0
        self.peak = 0  # most blocks held at once

    def blocks_for(self, positions: int) -> int:
        return math.ceil(positions / self.block_tokens)

    @property
    def free_blocks(self) -> int:
        return self.blocks - self.used

    @property
    def used_bytes(self) -> int:
        return self.used * self.block_bytes

    @property
    def capacity_bytes(self) -> int:
        return self.blocks * self.block_bytes

    def need(self, seq: int, positions: int) -> int:
        """Blocks `seq` needs beyond what it holds to hold `positions` positions."""
        return max(0, self.blocks_for(positions) - self.held.get(seq, 0))

    def fits(self, seq: int, positions: int, spare: int = 0) -> bool:
        """Whether `seq` can grow to `positions` leaving `spare` blocks free."""
        return self.need(seq, positions) + spare <= self.free_blocks

    def grow(self, seq: int, positions: int) -> bool:
        """Give `seq` the blocks for `positions` positions; False (nothing taken) if they are
        not free."""
        n = self.need(seq, positions)
        if n > self.free_blocks:
            return False
        if n:
            self.held[seq] = self.held.get(seq, 0) + n
            self.used += n
            self.peak = max(self.peak, self.used)
        return True

    def release(self, seq: int) -> int:
        """Return the blocks `seq` holds in the cache; how many."""
        n = self.held.pop(seq, 0)
        self.used -= n
        return n

    def can_swap_out(self, seq: int) -> bool:
        return self.held.get(seq, 0) <= self.swap_blocks - self.swap_used

    def swap_out(self, seq: int) -> int:
        """Move `seq`'s blocks to the swap area; the bytes copied."""
        n = self.release(seq)
        self.swapped[seq] = n
        self.swap_used += n
        return n * self.block_bytes

    def can_swap_in(self, seq: int, spare: int = 0) -> bool:
        return self.swapped.get(seq, 0) + spare <= self.free_blocks

    def swap_in(self, seq: int) -> int:
        """Move `seq`'s blocks back into the cache; the bytes copied."""
        n = self.swapped.pop(seq)
        self.swap_used -= n
        self.held[seq] = n
        self.used += n
        self.peak = max(self.peak, self.used)
        return n * self.block_bytes
