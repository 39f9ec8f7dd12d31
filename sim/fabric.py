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
    __slots__ = ("source", "path", "remaining", "t_start", "latency_s", "t_end", "rate",
                 "bottleneck", "t_first", "t_last")

    def __init__(
        self, source: int, path: tuple[int, ...], nbytes: float, t_start: float, latency_s: float
    ) -> None:
        self.source = source  # where the bytes come from (or go to)
        self.path = path  # levels crossed, source included
        self.remaining = nbytes  # bytes not yet sent
        self.t_start = t_start  # first byte leaves the source (s)
        self.latency_s = latency_s
        self.t_end = self.t_last = math.inf  # last byte leaves the source, reaches the compute
        #                                      units (s), once drained
        self.rate = 0.0  # bytes/s
        self.bottleneck = source  # level whose fair share last set the rate
        self.t_first = t_start + latency_s  # first byte reaches the compute units (s)

    def finish(self, t: float) -> None:
        self.remaining, self.t_end, self.t_last = 0.0, t, t + self.latency_s


class Fabric:
    """All flows of one device: those moving, and those due to start later."""

    def __init__(self, bandwidths: list[float], paths: list[tuple[int, ...]]) -> None:
        self.bw = bandwidths  # sustained bytes/s per level, innermost first
        self.paths = paths  # levels crossed by a flow from each source level
        # (rate, bottleneck) of a flow alone on the path from each source level
        # (the source wins a tie, then the innermost level)
        self.solo = [min(((bandwidths[i], i) for i in (p[-1], *p)), key=lambda x: x[0])
                     for p in paths]
        # max-min fair (rate, bottleneck) per source level, keyed by the sources of the flows in
        # flight: the rates depend on nothing else, and a run revisits few combinations
        self._shares: dict[tuple[int, ...], dict[int, tuple[float, int]]] = {}
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
        if at <= self.t:
            f = Flow(source, self.paths[source], nbytes, self.t, latency_s)
            self.moving.append(f)
            self._stale = True
        else:
            f = Flow(source, self.paths[source], nbytes, at, latency_s)
            self.due.append(f)
        return f

    def advance(self, t: float) -> None:
        """Move every flow on to instant `t`."""
        if self.moving or self.due:
            self._run(t, ())
        elif t > self.t:
            self.t = t

    def drain(self, flows: list[Flow]) -> None:
        """Move on until every one of `flows` has drained (their t_end is then known)."""
        for f in flows:
            if f.remaining > 0:
                self._run(math.inf, flows)
                return

    # -- internals -------------------------------------------------------------------------
    def _run(self, t_limit: float, until: list[Flow] | tuple[()]) -> None:
        moving, due, t = self.moving, self.due, self.t
        stale = self._stale
        try:
            while moving or due:
                if not moving:  # idle until the next flow is due
                    t_next = math.inf
                    for f in due:
                        if f.t_start < t_next:
                            t_next = f.t_start
                    if t_next > t_limit:
                        break
                    lim = t_next + (t_next * 1e-12 + 1e-15)
                    later = []
                    for f in due:
                        if f.t_start <= lim:
                            moving.append(f)
                        else:
                            later.append(f)
                    due, t, stale = later, t_next, True
                    continue
                if stale:
                    self._share(moving)
                    stale = False
                t_next = math.inf
                for f in moving:
                    te = t + f.remaining / f.rate
                    if te < t_next:
                        t_next = te
                for f in due:
                    if f.t_start < t_next:
                        t_next = f.t_start
                if t_next > t_limit:
                    break
                dt = t_next - t
                lim = t_next + (t_next * 1e-12 + 1e-15)
                still = []
                drained = False
                for f in moving:
                    if t + f.remaining / f.rate <= lim:  # the same sum as above, bit for bit
                        f.remaining, f.t_end, f.t_last = 0.0, t_next, t_next + f.latency_s
                        drained = True
                    else:
                        f.remaining -= f.rate * dt
                        still.append(f)
                moving = still
                t = t_next
                if due:
                    later = []
                    for f in due:
                        if f.t_start <= lim:
                            moving.append(f)
                        else:
                            later.append(f)
                    due = later
                stale = True
                if drained and until:
                    for f in until:
                        if f.remaining > 0:
                            break
                    else:
                        return
            if t_limit < math.inf and t_limit > t:
                dt = t_limit - t
                if stale and moving:
                    self._share(moving)
                    stale = False
                for f in moving:
                    f.remaining -= f.rate * dt
                t = t_limit
        finally:
            self.moving, self.due, self.t, self._stale = moving, due, t, stale

    def _share(self, moving: list[Flow]) -> None:
        """Give every moving flow its max-min fair rate and bottleneck (see fair_shares)."""
        if len(moving) == 1:
            f = moving[0]
            f.rate, f.bottleneck = self.solo[f.source]
            return
        key = tuple(sorted([f.source for f in moving]))
        table = self._shares.get(key)
        if table is None:
            table = self._shares[key] = fair_shares(key, self.paths, self.bw)
        for f in moving:
            f.rate, f.bottleneck = table[f.source]


def fair_shares(sources: tuple[int, ...], paths: list[tuple[int, ...]], bandwidths: list[float]
                ) -> dict[int, tuple[float, int]]:
    """Max-min fair (rate, bottleneck level) of flows from `sources` (one entry per flow) by
    progressive filling: repeatedly find the level whose remaining bandwidth split over its
    unfrozen flows is smallest, and freeze those flows there. Flows from one source share a
    path, so they freeze together at the same rate: the answer is per source."""
    cap = list(bandwidths)
    count: dict[int, int] = {}
    for s in sources:
        count[s] = count.get(s, 0) + 1
    out: dict[int, tuple[float, int]] = {}
    while count:
        crossing = [0] * len(cap)  # unfrozen flows through each level
        for s, k in count.items():
            for i in paths[s]:
                crossing[i] += k
        best_share, best_i = math.inf, 0
        for i, k in enumerate(crossing):
            if k and cap[i] / k < best_share:
                best_share, best_i = cap[i] / k, i
        for s in [s for s in count if best_i in paths[s]]:
            out[s] = (best_share, best_i)
            for _ in range(count[s]):  # one flow at a time, as the filling goes
                for i in paths[s]:
                    cap[i] -= best_share
            del count[s]
    return out
