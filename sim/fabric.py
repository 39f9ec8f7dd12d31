"""Bandwidth sharing: byte flows through the memory levels, solved as a fluid model.

A flow carries bytes from a source level to the compute units, crossing the levels of its path
(see memory.crossing_paths: registers, L1 and caches inside it, not a sibling DRAM tier). It is
a pipe: it takes bandwidth from its start, and each byte reaches the compute units one
first-byte latency after it leaves (latency is paid once per flow, not per byte). The rates of
all flows in flight are max-min fair (progressive filling): no level carries more than its
sustained bandwidth, and no flow could go faster without slowing one that is not faster.

Rates change only when a flow starts or drains, so between those instants every flow moves at a
constant rate and the next instant is computed, not stepped: work grows with the number of
flows, never with bytes. Flows are only ever started by the device process at op boundaries
(possibly for a later instant, such as the end of a dispatch), and it starts none while it waits
for an op, so the fabric can run ahead to the instant an op's flows drain and the engine sleeps
once, on a SimPy timeout, until the op ends.
"""

from __future__ import annotations

import math


class Flow:
    __slots__ = ("source", "path", "nbytes", "remaining", "t_start", "latency_s", "t_end",
                 "rate", "bottleneck", "t_first", "t_last")

    def __init__(
        self, source: int, path: tuple[int, ...], nbytes: float, t_start: float, latency_s: float
    ) -> None:
        self.source = source  # where the bytes come from (or go to)
        self.path = path  # levels crossed, source included
        self.nbytes = nbytes
        self.remaining = float(nbytes)
        self.t_start = t_start  # first byte leaves the source (s)
        self.latency_s = latency_s
        self.t_end = math.inf  # last byte leaves the source (s)
        self.rate = 0.0  # bytes/s
        self.bottleneck = source  # level whose fair share last set the rate
        self.t_first = t_start + latency_s  # first byte reaches the compute units (s)
        self.t_last = math.inf  # last byte reaches the compute units (s), once drained

    def finish(self, t: float) -> None:
        self.remaining, self.t_end, self.t_last = 0.0, t, t + self.latency_s


class Fabric:
    """All flows of one device: those moving, and those due to start later."""

    def __init__(self, bandwidths: list[float], paths: list[tuple[int, ...]]) -> None:
        self.bw = bandwidths  # sustained bytes/s per level, innermost first
        self.paths = paths  # levels crossed by a flow from each source level
        self.moving: list[Flow] = []
        self.due: list[Flow] = []  # start later than `t`
        self.t = 0.0  # the instant `remaining` refers to (s)
        self._stale = False  # rates need recomputing

    def start(self, source: int, nbytes: float, latency_s: float, at: float) -> Flow:
        """A flow whose first byte leaves `source` at `at` (not before the fabric's instant)."""
        if nbytes <= 0:
            f = Flow(source, self.paths[source], 0, at, 0.0)
            f.finish(at)
            return f
        f = Flow(source, self.paths[source], nbytes, max(at, self.t), latency_s)
        if f.t_start <= self.t:
            self.moving.append(f)
            self._stale = True
        else:
            self.due.append(f)
        return f

    def advance(self, t: float) -> None:
        """Move every flow on to instant `t`."""
        self._run(t, ())

    def drain(self, flows: list[Flow]) -> None:
        """Move on until every one of `flows` has drained (their t_end is then known)."""
        left = [f for f in flows if f.remaining > 0]
        if left:
            self._run(math.inf, left)

    # -- internals -------------------------------------------------------------------------
    def _run(self, t_limit: float, until: list[Flow] | tuple[()]) -> None:
        while self.moving or self.due:
            if self._stale:
                self._share()
                self._stale = False
            t_next = math.inf
            for f in self.moving:
                te = self.t + f.remaining / f.rate
                if te < t_next:
                    t_next = te
            for f in self.due:
                if f.t_start < t_next:
                    t_next = f.t_start
            if t_next > t_limit:
                break
            dt = t_next - self.t
            eps = t_next * 1e-12 + 1e-15
            still = []
            drained = False
            for f in self.moving:
                if self.t + f.remaining / f.rate <= t_next + eps:
                    f.finish(t_next)
                    drained = True
                else:
                    f.remaining -= f.rate * dt
                    still.append(f)
            self.moving = still
            self.t = t_next
            if self.due:
                now = [f for f in self.due if f.t_start <= t_next + eps]
                if now:
                    self.due = [f for f in self.due if f.t_start > t_next + eps]
                    self.moving.extend(now)
            self._stale = True
            if drained and until and all(f.remaining <= 0 for f in until):
                return
        if t_limit < math.inf and t_limit > self.t:
            dt = t_limit - self.t
            if self._stale and self.moving:
                self._share()
                self._stale = False
            for f in self.moving:
                f.remaining -= f.rate * dt
            self.t = t_limit

    def _share(self) -> None:
        """Max-min fair rates by progressive filling: repeatedly find the level whose remaining
        bandwidth split over its unfrozen flows is smallest, and freeze those flows there."""
        bw = self.bw
        if len(self.moving) == 1:
            f = self.moving[0]
            best = f.source
            for i in f.path:
                if bw[i] < bw[best]:
                    best = i
            f.rate, f.bottleneck = bw[best], best
            return
        cap = list(bw)
        open_ = self.moving
        while open_:
            crossing = [0] * len(bw)  # unfrozen flows through each level
            for f in open_:
                for i in f.path:
                    crossing[i] += 1
            best_share, best_i = math.inf, 0
            for i, n in enumerate(crossing):
                if n and cap[i] / n < best_share:
                    best_share, best_i = cap[i] / n, i
            keep = []
            for f in open_:
                if best_i in f.path:
                    f.rate, f.bottleneck = best_share, best_i
                    for i in f.path:
                        cap[i] -= best_share
                else:
                    keep.append(f)
            open_ = keep
