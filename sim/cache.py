"""Residency of tensors in a level with a cache policy.

A tensor is read as a sequential scan of a prefix of its bytes (a KV cache grows at its end; a
gather of embedding rows touches its beginning). Policies:

    lru  fully associative, line-granular LRU in the fluid limit, by Mattson's stack distance:
         a rescan of a tensor hits its previously read prefix r entirely iff r plus the bytes of
         other tensors touched since its last use fit in the capacity, and misses entirely
         otherwise (a sequential rescan's bytes all share one stack distance). So a cyclic
         working set larger than the cache thrashes, as a real LRU does, and because hits are
         decided by stack distance a bigger cache never hits less (LRU is a stack algorithm).
    pin  admit while free space lasts, never evict: a fixed share of a large working set stays.
"""

from __future__ import annotations

from collections import OrderedDict


class Cache:
    __slots__ = ("capacity_bytes", "policy", "used_bytes", "_stack", "_extent")
    # lru: used_bytes is the sum of the stack's entries

    def __init__(self, capacity_bytes: int, policy: str) -> None:
        if policy not in ("lru", "pin"):
            raise ValueError(f"cache policy must be 'lru' or 'pin', not {policy!r}")
        self.capacity_bytes = max(0, capacity_bytes)
        self.policy = policy
        self.used_bytes = 0  # pin: bytes pinned
        # lru: name -> its extent, least recent first; pin: name -> pinned bytes
        self._stack: OrderedDict[str, int] = OrderedDict()
        # lru: the most bytes of each tensor ever scanned; a scan touches the whole extent, so
        # what the stack records never depends on the capacity (that keeps LRU a stack algorithm)
        self._extent: dict[str, int] = {}

    def lookup(self, name: str, nbytes: int) -> int:
        """Scan the first `nbytes` of `name`; return how many of them hit (a prefix)."""
        if self.policy == "pin":
            have = self._stack.get(name, 0)
            grow = min(nbytes - have, self.capacity_bytes - self.used_bytes)
            if grow > 0:
                self._stack[name] = have + grow
                self.used_bytes += grow
            return min(have, nbytes)
        # Every tensor above `name` in the stack is still there (pruning drops the least
        # recent first) and the stack fits the capacity, so `name` is within its stack
        # distance iff it is still in the stack: a rescan then hits its whole previous extent.
        stack = self._stack
        r = stack.pop(name, 0)  # 0: never seen, or pruned as deeper than the capacity
        extent = self._extent.get(name, 0)
        if nbytes > extent:
            extent = self._extent[name] = nbytes
        stack[name] = extent  # the most recent now
        used = self.used_bytes = self.used_bytes + extent - r
        if used > self.capacity_bytes:
            self._prune()
        return r if r < nbytes else nbytes

    def _prune(self) -> None:
        """Forget the least recent tensors until the rest fit: a tensor deeper than the
        capacity can never hit again, since its stack distance only grows."""
        stack = self._stack
        while self.used_bytes > self.capacity_bytes:
            _, size = stack.popitem(last=False)
            self.used_bytes -= size

    def resident_bytes(self, name: str) -> int:
        """Bytes of `name` a scan would hit now (without touching it); for LRU, see lookup:
        in the stack means within reach."""
        return self._stack.get(name, 0)

    def resize(self, capacity_bytes: int) -> None:
        """Change the space left for caching (when a phase homes activations here)."""
        self.capacity_bytes = max(0, capacity_bytes)
        if self.policy == "lru":
            self._prune()
            return
        while self.used_bytes > self.capacity_bytes and self._stack:
            _, size = self._stack.popitem(last=True)  # unpin the latest admitted
            self.used_bytes -= size
