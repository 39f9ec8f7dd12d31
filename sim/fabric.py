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

_BITS = 32  # a signature counts the flows in flight per source level in fields of this width


class Flow:
    __slots__ = ("source", "remaining", "t_start", "latency_s", "t_end", "bottleneck",
                 "t_first", "t_last")

    def __init__(self, source: int, nbytes: float, t_start: float, latency_s: float) -> None:
        self.source = source  # where the bytes come from (or go to)
        self.remaining = nbytes  # bytes not yet sent
        self.t_start = t_start  # first byte leaves the source (s)
        self.latency_s = latency_s
        self.t_end = self.t_last = math.inf  # last byte leaves the source, reaches the compute
        #                                      units (s), once drained
        self.bottleneck = source  # level whose fair share set its last rate (set when drained)
        self.t_first = t_start + latency_s  # first byte reaches the compute units (s)

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
        # The rates depend only on how many flows from each source are moving, so that count,
        # packed into one integer (the signature), keys a table of (rates, bottlenecks) per
        # source level, solved once per combination a run meets.
        self._unit = [1 << (_BITS * i) for i in range(len(paths))]
        self._sig = 0
        self._tables = _Tables(self)

    def start(self, source: int, nbytes: float, latency_s: float, at: float) -> Flow:
        """A flow whose first byte leaves `source` at `at` (not before the fabric's instant)."""
        if nbytes <= 0:
            f = Flow(source, 0, at, 0.0)
            f.finish(at)
            return f
        if at <= self.t:
            f = Flow(source, nbytes, self.t, latency_s)
            self.moving.append(f)
            self._sig += self._unit[source]
        else:
            f = Flow(source, nbytes, at, latency_s)
            self.due.append(f)
        return f

    def start_many(self, reads: dict[int, int], writes: dict[int, int] | None,
                   latency_s: list[float], at: float) -> list[Flow]:
        """One flow per level of `reads` and `writes` (level -> bytes), innermost first, all
        starting at `at`; a level's latency is paid if it is read, not for pure writes."""
        start = self.start
        if not writes:
            if len(reads) == 1:
                for lvl, b in reads.items():
                    return [start(lvl, b, latency_s[lvl], at)]
            flows = []
            for lvl in sorted(reads):
                flows.append(start(lvl, reads[lvl], latency_s[lvl], at))
            return flows
        both = reads.copy()
        for lvl, w in writes.items():
            both[lvl] = both.get(lvl, 0) + w
        flows = []
        for lvl in sorted(both) if len(both) > 1 else both:
            flows.append(start(lvl, both[lvl], latency_s[lvl] if lvl in reads else 0.0, at))
        return flows

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
        moving, due, t, sig = self.moving, self.due, self.t, self._sig
        unit, tables = self._unit, self._tables
        try:
            while moving or due:
                drained = False
                t_next = math.inf
                if moving:
                    rate, bottleneck = tables[sig]
                    for f in moving:
                        te = t + f.remaining / rate[f.source]
                        if te < t_next:
                            t_next = te
                for f in due:
                    if f.t_start < t_next:
                        t_next = f.t_start
                if t_next > t_limit:
                    break
                dt = t_next - t
                lim = t_next + (t_next * 1e-12 + 1e-15)
                if moving:
                    still = []
                    for f in moving:
                        r = rate[f.source]
                        if t + f.remaining / r <= lim:  # the same sum as above, bit for bit
                            f.remaining, f.t_end, f.t_last = 0.0, t_next, t_next + f.latency_s
                            f.bottleneck = bottleneck[f.source]
                            sig -= unit[f.source]
                            drained = True
                        else:
                            f.remaining -= r * dt
                            still.append(f)
                    moving = still
                t = t_next
                if due:
                    later = []
                    for f in due:
                        if f.t_start <= lim:
                            moving.append(f)
                            sig += unit[f.source]
                        else:
                            later.append(f)
                    due = later
                if drained and until:
                    for f in until:
                        if f.remaining > 0:
                            break
                    else:
                        return
            if t_limit < math.inf and t_limit > t:
                if moving:
                    rate = tables[sig][0]
                    for f in moving:
                        f.remaining -= rate[f.source] * (t_limit - t)
                t = t_limit
        finally:
            self.moving, self.due, self.t, self._sig = moving, due, t, sig

    def _table(self, sig: int) -> tuple[list[float], list[int]]:
        """(rate, bottleneck) per source level for the flows that signature `sig` counts."""
        n = len(self.paths)
        mask = (1 << _BITS) - 1
        count = {s: (sig >> (_BITS * s)) & mask for s in range(n) if (sig >> (_BITS * s)) & mask}
        rate, bottleneck = [0.0] * n, list(range(n))
        if sum(count.values()) == 1:  # alone: its slowest level (the source wins a tie, then
            (s,) = count  #              the innermost level)
            p = self.paths[s]
            rate[s], bottleneck[s] = min(((self.bw[i], i) for i in (p[-1], *p)),
                                         key=lambda x: x[0])
            return rate, bottleneck
        for s, (r, b) in fair_shares(count, self.paths, self.bw).items():
            rate[s], bottleneck[s] = r, b
        return rate, bottleneck


class _Tables(dict):
    """signature -> (rate, bottleneck) per source level, solved on first use."""

    def __init__(self, fabric: Fabric) -> None:
        super().__init__()
        self.fabric = fabric

    def __missing__(self, sig: int) -> tuple[list[float], list[int]]:
        got = self[sig] = self.fabric._table(sig)
        return got


def fair_shares(count: dict[int, int], paths: list[tuple[int, ...]], bandwidths: list[float]
                ) -> dict[int, tuple[float, int]]:
    """Max-min fair (rate, bottleneck level) of `count[s]` flows from each source level s, by
    progressive filling: repeatedly find the level whose remaining bandwidth split over its
    unfrozen flows is smallest, and freeze those flows there. Flows from one source share a
    path, so they freeze together at the same rate: the answer is per source."""
    cap = list(bandwidths)
    count = dict(count)
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
