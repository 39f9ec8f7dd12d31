"""Where every tensor lives and which level serves each byte an op reads or writes.

Homes: room for the first phase's activations is kept first, in the first level of
`placement.activations` that can hold them (only if that level also homes weights or KV cache;
a cache level just lends them its space). Weights are placed next, every one the device
stores, in the op graph's home order (workloads: the order the last phase first uses them,
routed experts hottest first after the rest), each in the first level of `placement.weights`
with room (a tensor that straddles a full level is split, its first bytes in the inner level).
The KV cache comes next at its final size and spills the way it grows: the first positions of
every layer stay in the first level of `placement.kv_cache` and, once that is full, later
positions go to the next. Activations are homed per phase, whole, in the first level of
`placement.activations` with room for the phase's largest op. What is left of a level with a
cache policy caches tensors homed further out (see cache.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from .cache import CachePolicy, make_cache
from .errors import MemwallError
from .hierarchy import Hierarchy
from .opgraph import Tensor

Chunk = tuple[int, int, int]  # (level index, first byte, end byte) of a tensor's home
# (level -> bytes whose level is fixed, the reads a cache may serve or the KV cache writes)
Plan = tuple[dict[int, int], tuple]


def tensor_footprint(G: nx.DiGraph) -> dict[str, tuple[str, int]]:
    """name -> (class, bytes) of the weights and KV cache of the largest phase `G`: every
    weight of G.graph["weight_bytes"], in that dict's order (the builder's home order: see
    sim/opgraph.py), then the KV cache in order of first use, at what the last op reads of it
    (every position so far, or a window's). A graph without weight_bytes homes the weights it
    reads, in order of first use, at their largest read."""
    stored: dict[str, int] | None = G.graph.get("weight_bytes")
    out: dict[str, tuple[str, int]] = {}
    if stored is not None:
        out.update((name, ("weight", size)) for name, size in stored.items())
    for _, a in G.nodes(data=True):
        for t in a["reads"]:
            if t.cls == "activation" or (stored is not None and t.cls == "weight"):
                continue
            if t.nbytes > out.get(t.name, ("", -1))[1]:
                out[t.name] = (t.cls, t.nbytes)
    return out


def activation_bytes(a: dict) -> int:
    """Activation bytes one op (node attributes `a`) reads and writes."""
    n = 0
    for ts in (a["reads"], a["writes"]):
        for t in ts:
            if t.cls == "activation":
                n += t.nbytes
    return n


def activation_pool_bytes(G: nx.DiGraph) -> int:
    """Activation bytes the largest op of phase G reads and writes: the buffer they need."""
    return max((activation_bytes(a) for _, a in G.nodes(data=True)), default=0)


def crossing_paths(hier: Hierarchy) -> list[tuple[int, ...]]:
    """For each source level s, the levels a byte from s crosses on its way to the compute units:
    s and every level inside it, except a sibling tier: a level with no cache policy that some
    placement list names together with s (an LPDDR tier filled after HBM reaches L2 without
    crossing HBM). Registers, L1, caches and scratchpads in front of s are crossed."""
    names = [lv.name for lv in hier.levels]
    p = hier.placement
    lists = [{names.index(n) for n in order} for order in (p.weights, p.kv_cache, p.activations)]

    def sibling(i: int, s: int) -> bool:
        return hier.levels[i].policy == "none" and any(i in x and s in x for x in lists)

    return [
        tuple(i for i in range(s + 1) if not (i < s and sibling(i, s))) for s in range(len(names))
    ]


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


class Memory:
    """Homes, caches and the byte-level routing of reads and writes for one device."""

    def __init__(self, hier: Hierarchy, footprint: Mapping[str, tuple[str, int]],
                 activation_bytes: int = 0) -> None:
        """`footprint`: the weights and KV cache to home (tensor_footprint); `activation_bytes`:
        the activation buffer of the first phase, kept free for activations before any weight
        is homed, so that a prefill too large for the first activation level finds room in
        the next even when weights could fill it (they spill to the next tier instead)."""
        self.hier = hier
        self.levels = hier.levels
        self.n_levels = len(self.levels)
        names = [lv.name for lv in self.levels]
        self.free = [lv.capacity_bytes for lv in self.levels]  # bytes not homed
        self.homes: dict[str, tuple[Chunk, ...]] = {}
        need = {"weight": 0, "kv_cache": 0}
        for cls, nbytes in footprint.values():
            need[cls] = need.get(cls, 0) + nbytes
        weights = [(n, b) for n, (c, b) in footprint.items() if c == "weight"]
        kv = [(n, b) for n, (c, b) in footprint.items() if c == "kv_cache"]
        w_levels = [names.index(n) for n in hier.placement.weights]
        kv_levels = [names.index(n) for n in hier.placement.kv_cache]
        self.act_levels = [names.index(n) for n in hier.placement.activations]
        self.reserved = [0] * len(self.levels)  # kept for activations, not homed
        for i in self.act_levels:
            if activation_bytes <= self.free[i]:
                if i in w_levels or i in kv_levels:  # a home level: keep the room
                    self.reserved[i] = activation_bytes
                    self.free[i] -= activation_bytes
                break
        if need["weight"] > sum(self.free[i] for i in w_levels):
            raise self._does_not_fit("weights", need["weight"], w_levels)
        for name, nbytes in weights:
            self.homes[name] = self._fill(nbytes, w_levels)
        if need["kv_cache"] > sum(self.free[i] for i in kv_levels):
            raise self._does_not_fit("KV cache", need["kv_cache"], kv_levels, need["weight"])
        self._place_kv(kv, kv_levels)
        self.caches: dict[int, CachePolicy] = {
            i: make_cache(lv.policy, self.free[i])
            for i, lv in enumerate(self.levels)
            if lv.policy != "none"
        }
        self.act_level = self.act_levels[0]
        self.paths = crossing_paths(hier)
        # a path is every level from the source inward, but for the sibling tiers it skips:
        # (level, source) pairs where a byte from the source does not cross the level
        n = len(self.levels)
        self._skips = [(k, src) for src in range(n) for k in range(src)
                       if k not in self.paths[src]]
        self._inward = tuple(range(n - 2, -1, -1))
        self._inside = [  # caches inside each level, innermost first: (level, levels + level,
            # its cache)
            [(i, n + i, c) for i, c in self.caches.items() if i < lvl]
            for lvl in range(len(self.levels))
        ]
        self.kv_written: dict[str, int] = {}  # KV tensor -> bytes appended so far
        self._kv_step: dict[str, int] = {}  # KV tensor -> bytes its last write appended
        self.step = 0  # the last step whose phase began (begin_step)

    # -- placement ---------------------------------------------------------------------------
    def _fill(self, nbytes: int, order: list[int]) -> tuple[Chunk, ...]:
        chunks: list[Chunk] = []
        at = 0
        for i in order:
            take = min(nbytes - at, self.free[i])
            if take > 0:
                chunks.append((i, at, at + take))
                self.free[i] -= take
                at += take
            if at >= nbytes:
                break
        return tuple(chunks) or ((order[-1], 0, 0),)

    def _place_kv(self, kv: list[tuple[str, int]], order: list[int]) -> None:
        total = sum(b for _, b in kv)
        shares: dict[str, list[Chunk]] = {n: [] for n, _ in kv}
        at = {n: 0 for n, _ in kv}
        left = total
        for i in order:
            if left <= 0:
                break
            frac = min(1.0, self.free[i] / left)  # same share of positions for every layer
            used = 0
            for n, b in kv:
                take = b - at[n] if frac >= 1.0 else int((b - at[n]) * frac)
                if take > 0:
                    shares[n].append((i, at[n], at[n] + take))
                    at[n] += take
                    used += take
            self.free[i] -= used
            left -= used
        for n, _ in kv:
            self.homes[n] = tuple(shares[n]) or ((order[0], 0, 0),)

    def _does_not_fit(
        self, what: str, nbytes: int, order: list[int], already: int = 0,
        room: list[int] | None = None,
    ) -> MemwallError:
        lv, free = self.levels, self.free if room is None else room
        offers = ", ".join(
            f"{lv[i].name} {_gb(free[i])} free of {_gb(lv[i].capacity_bytes)}" for i in order
        )
        extra = f" after {_gb(already)} of weights" if already else ""
        kept = sum(self.reserved[i] for i in order) if room is None else 0
        if kept:
            extra += f" and {_gb(kept)} kept for the first phase's activations"
        return MemwallError(
            f"{self.hier.name}: {what} need {_gb(nbytes)} ({nbytes} bytes){extra} but the levels "
            f"placement allows offer {offers}; use more devices (--tp), a lower precision, or a "
            f"hierarchy with more memory"
        )

    def place(self, name: str, level: int, nbytes: int) -> None:
        """Home tensor `name` whole in `level` (an index) after the footprint was placed,
        taking `nbytes` of the level's free room: space its owner sizes itself from `free`
        and accounts for (the serving loop's paged KV cache and swap area). Its reads and
        writes then route to `level` whatever their size. The level must cache nothing (its
        cache was sized from what the footprint left)."""
        lv = self.levels[level]
        if lv.policy != "none":
            raise MemwallError(f"{self.hier.name}: cannot home {name} in {lv.name}, a level "
                               f"with cache policy {lv.policy}; expected a level without one")
        if not 0 <= nbytes <= self.free[level]:
            raise MemwallError(f"{self.hier.name}: {name} needs {_gb(nbytes)} in {lv.name}, "
                               f"which has {_gb(self.free[level])} free")
        self.homes[name] = ((level, 0, nbytes),)
        self.free[level] -= nbytes

    def begin_phase(self, pool: int) -> None:
        """Home a phase's activations, `pool` bytes (what its largest op reads and writes of
        them), and shrink the caches that share their level."""
        room = [f + r for f, r in zip(self.free, self.reserved, strict=True)]
        for i in self.act_levels:
            if pool <= room[i]:
                self.act_level = i
                break
        else:
            raise self._does_not_fit("activations", pool, self.act_levels, room=room)
        for i, c in self.caches.items():
            c.resize(room[i] - (pool if i == self.act_level else 0))

    def crossed(self, moved: Iterable[dict[int, int]]) -> tuple[int, ...]:
        """Bytes that crossed each level when the transfers `moved` (each: source level ->
        bytes) went between their sources and the compute units (see crossing_paths)."""
        nb = [0] * len(self.levels)
        for m in moved:
            for src, b in m.items():
                nb[src] += b
        skipped = [(k, nb[src]) for k, src in self._skips] if self._skips else ()
        for k in self._inward:  # a byte from a level crosses every level inside it
            nb[k] += nb[k + 1]
        for k, b in skipped:
            nb[k] -= b
        return tuple(nb)

    # -- routing -----------------------------------------------------------------------------
    # An op's reads and writes are compiled once into a Plan (while the op's tensors and the
    # activations' level stay the same) and routed by it each time the op runs: bytes whose
    # level is fixed are summed ahead, and only reads a cache may serve, and KV cache writes
    # (which land where the cache has grown to), are worked out per run.

    def plan_reads(self, tensors: Iterable[Tensor]) -> Plan:
        fixed: dict[int, int] = {}
        cached = []
        for t in tensors:
            b = t.nbytes
            if b <= 0:
                continue
            home = self.homes.get(t.name) if t.cls != "activation" else None
            if home is None:
                home = ((self.act_level, 0, b),)
            caches = self._inside[home[0][0]]
            if caches:  # `whole`: the level of a home chunk that holds all it reads, else -1
                whole = home[0][0] if len(home) == 1 and b <= home[0][2] else -1
                cached.append((t.name, b, caches, home, whole))
            else:
                _spread(0, b, home, fixed)
        return fixed, tuple(cached)

    def plan_writes(self, tensors: Iterable[Tensor]) -> Plan:
        """Writes go through to the tensor's home (no write-allocate); a KV cache write appends
        after the positions written so far, and past the end of its home (a sliding window's
        cache, homed at the window's size) wraps to its start."""
        fixed: dict[int, int] = {}
        kv = []
        for t in tensors:
            b = t.nbytes
            if b <= 0:
                continue
            if t.cls == "kv_cache":
                kv.append((t.name, b, self.homes.get(t.name, ((self.act_level, 0, 0),))))
            elif t.cls == "weight":
                _spread(0, b, self.homes[t.name], fixed)
            else:
                fixed[self.act_level] = fixed.get(self.act_level, 0) + b
        return fixed, tuple(kv)

    def route_reads(self, plan: Plan, seen: list[int]) -> dict[int, int]:
        """level -> bytes served from it, for one run of the reads of `plan` (updates caches).
        `seen` (2 x levels, innermost first) gathers what the caches did: seen[i] the bytes
        the cache at level i served, seen[levels + i] the bytes that looked it up (those no
        cache further in had served), hits and misses."""
        fixed, cached = plan
        out = fixed.copy()
        for name, b, caches, home, whole in cached:
            covered = 0  # bytes [0, covered) already served by a cache further in
            for i, j, c in caches:  # j = levels + i
                hit = c.lookup(name, b)
                seen[j] += b - covered
                if hit > covered:
                    out[i] = out.get(i, 0) + hit - covered
                    seen[i] += hit - covered
                    covered = hit
            if covered < b:
                if whole >= 0:
                    out[whole] = out.get(whole, 0) + b - covered
                else:
                    _spread(covered, b, home, out)
        return out

    def begin_step(self, step: int) -> None:
        """A phase of `step` begins. Decode steps left out of a sampled run (steps between
        the last one run and this) still appended their positions to the KV cache: each
        tensor moves on by as many of its last appends, so this step's writes land where a
        full run puts them (and the caches keep what they saw: the skipped steps touch the
        same tensors, in the same order)."""
        skipped = step - self.step - 1
        if self.step >= 1 and skipped > 0:
            for name, b in self._kv_step.items():
                self.kv_written[name] += skipped * b
        self.step = step

    def route_writes(self, plan: Plan) -> dict[int, int]:
        """level -> bytes landing in it, for one run of the writes of `plan`."""
        fixed, kv = plan
        out = fixed.copy()
        written = self.kv_written
        for name, b, home in kv:
            start = written.get(name, 0)
            written[name] = start + b
            self._kv_step[name] = b
            size = home[-1][2]
            if start + b <= size or size <= 0:
                _spread(start, start + b, home, out)
            else:  # a window's cache is a ring: positions past its end overwrite its oldest
                lo = start % size
                _spread(lo, min(size, lo + b), home, out)
                if lo + b > size:
                    _spread(0, lo + b - size, home, out)
        return out


def _spread(lo: int, hi: int, home: tuple[Chunk, ...], out: dict[int, int]) -> None:
    """Add bytes [lo, hi) of a tensor to the levels of its home chunks; bytes past the last
    chunk (a KV cache read beyond its planned size) land in the last chunk's level."""
    for i, start, end in home:
        n = min(hi, end) - max(lo, start)
        if n > 0:
            out[i] = out.get(i, 0) + n
    last_level, _, last_end = home[-1]
    if hi > last_end:
        n = hi - max(lo, last_end)
        out[last_level] = out.get(last_level, 0) + n
