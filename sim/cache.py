"""Residency of tensors in a level with a cache policy.

A tensor is resident as a prefix of its bytes (a KV cache grows at its end; a gather of
embedding rows touches its beginning). Policies:
    lru  admit every tensor that fits, evict whole least-recently-used tensors to make room; a
         tensor larger than the whole cache is not kept (streaming it would evict itself), so a
         cyclic working set larger than the cache thrashes, as a real LRU does.
    pin  admit while free space lasts, never evict: a fixed share of a large working set stays.
"""

from __future__ import annotations

from collections import OrderedDict


class Cache:
    __slots__ = ("capacity_bytes", "policy", "used_bytes", "_resident")

    def __init__(self, capacity_bytes: int, policy: str) -> None:
        if policy not in ("lru", "pin"):
            raise ValueError(f"cache policy must be 'lru' or 'pin', not {policy!r}")
        self.capacity_bytes = max(0, capacity_bytes)
        self.policy = policy
        self.used_bytes = 0
        self._resident: OrderedDict[str, int] = OrderedDict()  # name -> resident prefix, bytes

    def resident(self, name: str) -> int:
        """Resident prefix of `name` (bytes); a lookup counts as a use for LRU."""
        r = self._resident.get(name, 0)
        if r and self.policy == "lru":
            self._resident.move_to_end(name)
        return r

    def fill(self, name: str, upto: int) -> None:
        """Make the first `upto` bytes of `name` resident, as far as the policy allows."""
        have = self._resident.get(name, 0)
        if upto <= have:
            return
        if self.policy == "pin":
            grow = min(upto - have, self.capacity_bytes - self.used_bytes)
            if grow > 0:
                self._resident[name] = have + grow
                self.used_bytes += grow
            return
        if upto > self.capacity_bytes:
            return
        need = upto - have
        if have:
            self._resident.move_to_end(name)
        while self.used_bytes + need > self.capacity_bytes:
            victim, size = next(iter(self._resident.items()))
            del self._resident[victim]
            self.used_bytes -= size
        self._resident[name] = upto
        self._resident.move_to_end(name)
        self.used_bytes += need

    def resize(self, capacity_bytes: int) -> None:
        """Change the space left for caching (when a phase homes activations here)."""
        self.capacity_bytes = max(0, capacity_bytes)
        while self.used_bytes > self.capacity_bytes and self._resident:
            # LRU drops the least recent; pin drops the latest admitted
            order = iter(self._resident) if self.policy == "lru" else reversed(self._resident)
            victim = next(order)
            self.used_bytes -= self._resident.pop(victim)
