"""Residency of tensors in a level with a cache policy: one small class per policy, by name.

A tensor is read as a sequential scan of a prefix of its bytes (a KV cache grows at its end; a
gather of embedding rows touches its beginning). Policies:

    lru  fully associative, line-granular LRU in the fluid limit, by Mattson's stack distance:
         a rescan of a tensor hits its previously read prefix r entirely iff r plus the bytes of
         other tensors touched since its last use fit in the capacity, and misses entirely
         otherwise (a sequential rescan's bytes all share one stack distance). So a cyclic
         working set larger than the cache thrashes, as a real LRU does, and because hits are
         decided by stack distance a bigger cache never hits less (LRU is a stack algorithm).
    pin  admit while free space lasts, never evict: a fixed share of a large working set stays.

A level's `policy` names its class in POLICIES ("none": the level caches nothing); the
hierarchy loader accepts exactly those names.
"""

from __future__ import annotations

from collections import OrderedDict


class CachePolicy:
    """The part of a level left over for caching tensors homed further out, and what it keeps.

    `lookup` is the whole interface the memory system uses on every cached read, so keep it
    lean; `resize` runs once per phase (when activations take or give back room here).

    To add a policy: a subclass here with `lookup` and `resize` (and `resident_bytes`, if
    `_stack` does not hold what a scan would hit), one entry in POLICIES under the name a
    hierarchy file gives it, and one test in tests/test_cache.py. Nothing else changes: the
    hierarchy loader and the memory system take their names and classes from POLICIES.
    """

    __slots__ = ("capacity_bytes", "used_bytes", "_stack")

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, capacity_bytes)
        self.used_bytes = 0  # bytes held
        self._stack: OrderedDict[str, int] = OrderedDict()  # name -> bytes held, oldest first

    def lookup(self, name: str, nbytes: int) -> int:
        """Scan the first `nbytes` of `name`; return how many of them hit (a prefix)."""
        raise NotImplementedError

    def resize(self, capacity_bytes: int) -> None:
        """Change the space left for caching (when a phase homes activations here)."""
        raise NotImplementedError

    def resident_bytes(self, name: str) -> int:
        """Bytes of `name` a scan would hit now (without touching it)."""
        return self._stack.get(name, 0)


class LRU(CachePolicy):
    """LRU by stack distance (see the module docstring). `_stack` holds each tensor's extent,
    least recent first, and `used_bytes` is their sum; a tensor in the stack is within reach."""

    __slots__ = ("_extent",)

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes)
        # the most bytes of each tensor ever scanned; a scan touches the whole extent, so what
        # the stack records never depends on the capacity (that keeps LRU a stack algorithm)
        self._extent: dict[str, int] = {}

    def lookup(self, name: str, nbytes: int) -> int:
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

    def resize(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, capacity_bytes)
        self._prune()

    def extent(self, name: str) -> int:
        """The most bytes of `name` ever scanned. Above the capacity, `name` is never in the
        stack, so a scan of it misses and leaves the stack empty, whatever was there: what
        came before cannot matter to what comes after (sim.analytic replays from there)."""
        return self._extent.get(name, 0)

    def extents(self, names: tuple[str, ...]) -> tuple[int, ...]:
        get = self._extent.get
        return tuple([get(name, 0) for name in names])

    def save(self, names: tuple[str, ...]) -> tuple:
        """The stack, and the extents of `names`, to `load` back."""
        return tuple(self._stack.items()), self.used_bytes, self.extents(names)

    def load(self, saved: tuple, names: tuple[str, ...]) -> None:
        stack, self.used_bytes, extents = saved
        self._stack.clear()
        self._stack.update(stack)
        for name, e in zip(names, extents, strict=True):
            if e:
                self._extent[name] = e

    def _prune(self) -> None:
        """Forget the least recent tensors until the rest fit: a tensor deeper than the
        capacity can never hit again, since its stack distance only grows."""
        stack = self._stack
        while self.used_bytes > self.capacity_bytes:
            _, size = stack.popitem(last=False)
            self.used_bytes -= size


class Pin(CachePolicy):
    """Admit while free space lasts, never evict. `_stack` holds each tensor's pinned bytes, in
    the order they were first admitted."""

    __slots__ = ()

    def lookup(self, name: str, nbytes: int) -> int:
        have = self._stack.get(name, 0)
        grow = min(nbytes - have, self.capacity_bytes - self.used_bytes)
        if grow > 0:
            self._stack[name] = have + grow
            self.used_bytes += grow
        return min(have, nbytes)

    def resize(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, capacity_bytes)
        while self.used_bytes > self.capacity_bytes and self._stack:
            _, size = self._stack.popitem(last=True)  # unpin the latest admitted
            self.used_bytes -= size


POLICIES: dict[str, type[CachePolicy]] = {"lru": LRU, "pin": Pin}


def make_cache(policy: str, capacity_bytes: int) -> CachePolicy:
    """The cache of a level whose policy is `policy` (a name in POLICIES), `capacity_bytes`
    of room.

    >>> c = make_cache("lru", 1000)
    >>> c.lookup("w", 400), c.lookup("w", 400)
    (0, 400)
    """
    cls = POLICIES.get(policy)
    if cls is None:
        raise ValueError(f"cache policy {policy!r}: expected one of {', '.join(POLICIES)}")
    return cls(capacity_bytes)
