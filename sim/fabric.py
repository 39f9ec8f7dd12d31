"""Bandwidth sharing: byte flows through the memory levels, on a SimPy Environment.

A flow carries bytes from a source level to the compute units, crossing the levels of its path
(see memory.crossing_paths: registers, L1 and caches inside it, not a sibling DRAM tier). It is a
pipe:
it takes bandwidth from the moment it is issued, and each byte reaches the compute units one
first-byte latency after it leaves (latency is paid once per flow, not per byte). The rates of
all flows in flight are max-min fair (progressive filling): no level carries more than its
sustained bandwidth, and no flow could go faster without slowing one that is not faster.
Rates change only when a flow is issued or drains, so events grow with the number of flows,
never with bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import simpy


class Flow:
    __slots__ = ("source", "path", "nbytes", "remaining", "t_start", "latency_s", "t_end", "rate",
                 "bottleneck", "on_done")

    def __init__(
        self, source: int, path: tuple[int, ...], nbytes: float, t_start: float, latency_s: float
    ) -> None:
        self.source = source  # where the bytes come from (or go to)
        self.path = path  # levels crossed, source included
        self.nbytes = nbytes
        self.remaining = float(nbytes)
        self.t_start = t_start
        self.latency_s = latency_s
        self.t_end = math.inf  # last byte leaves the source (s)
        self.rate = 0.0  # bytes/s
        self.bottleneck = source  # level whose fair share last set the rate
        self.on_done: Callable[[Flow], None] | None = None

    @property
    def t_first(self) -> float:
        """First byte reaches the compute units (s)."""
        return self.t_start + self.latency_s

    @property
    def t_last(self) -> float:
        """Last byte reaches the compute units (s)."""
        return self.t_end + self.latency_s

    @property
    def drained(self) -> bool:
        return self.remaining <= 0.0


class Fabric:
    """All flows in flight on one device."""

    def __init__(
        self, env: simpy.Environment, bandwidths: list[float], paths: list[tuple[int, ...]]
    ) -> None:
        self.env = env
        self.bw = bandwidths  # sustained bytes/s per level, innermost first
        self.paths = paths  # levels crossed by a flow from each source level
        self.flows: list[Flow] = []
        self._t = 0.0  # time `remaining` refers to
        self._timer_gen = 0

    def start(self, source: int, nbytes: float, latency_s: float) -> Flow:
        now = self.env.now
        if nbytes <= 0:
            f = Flow(source, self.paths[source], 0, now, 0.0)
            f.remaining, f.t_end = 0.0, now
            return f
        f = Flow(source, self.paths[source], nbytes, now, latency_s)
        self._advance(now)
        self.flows.append(f)
        self._reschedule(now)
        return f

    # -- internals -------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        dt = now - self._t
        if dt > 0:
            for f in self.flows:
                f.remaining -= f.rate * dt
        self._t = now

    def _share(self) -> None:
        """Max-min fair rates by progressive filling: repeatedly find the level whose remaining
        bandwidth split over its unfrozen flows is smallest, and freeze those flows there."""
        bw = self.bw
        if len(self.flows) == 1:
            f = self.flows[0]
            best = f.source
            for i in f.path:
                if bw[i] < bw[best]:
                    best = i
            f.rate, f.bottleneck = bw[best], best
            return
        cap = list(bw)
        open_ = self.flows
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

    def _reschedule(self, now: float) -> None:
        if not self.flows:
            return
        self._share()
        t_next = math.inf
        for f in self.flows:
            f.t_end = now + f.remaining / f.rate
            if f.t_end < t_next:
                t_next = f.t_end
        self._timer_gen += 1
        gen = self._timer_gen
        ev = self.env.timeout(max(0.0, t_next - now))
        ev.callbacks.append(lambda _ev: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self._timer_gen:
            return  # superseded by a later change
        now = self.env.now
        self._advance(now)
        eps = now * 1e-12 + 1e-15
        still, done = [], []
        for f in self.flows:
            (done if f.t_end <= now + eps else still).append(f)
        self.flows = still
        for f in done:
            f.remaining, f.t_end = 0.0, now
            if f.on_done is not None:
                f.on_done(f)
        self._reschedule(now)
