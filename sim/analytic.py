"""The analytic engine: a per-op roofline on the same graphs, memory system and cost model.

Each op takes dispatch (launch, or the wait for a slower host to issue it, as in the
discrete-event engine) + the longest first-byte latency of its reads + max(compute, the
busiest level's bytes / its streaming bandwidth under the runtime) with overlap on; with
overlap off, reads then compute then writes. Nothing overlaps across ops, nothing contends,
so it is what the discrete-event engine gives with prefetch depth 0, and a fast estimate for
sweeps.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import networkx as nx

from . import cost
from .cache import LRU
from .hierarchy import Hierarchy
from .memory import Memory, activation_pool_bytes
from .opgraph import topo_ops
from .planning import EngineOptions, OpFacts, OpInfo, Sink, check_tp, stream_bandwidths, stretched
from .trace import OpRecord


def _transfer(lb: tuple[int, ...], reads: dict[int, int], bw: list[float], lat: list[float]):
    """(first-byte latency, its level or -1, time at the busiest level, that level) of flows
    that put `lb` bytes through each level, whose reads (the part that pays latency) are
    `reads` (source level -> bytes)."""
    top, T = 0, -1.0
    for i, b in enumerate(lb):
        x = b / bw[i]
        if x > T:
            top, T = i, x
    first = max(reads, key=lat.__getitem__) if reads else -1
    return (lat[first] if first >= 0 else 0.0), first, T, top


def _costs(op: OpInfo, a: dict, w: dict[int, int], others: dict[int, int],
           writes: dict[int, int], seen: list[int], mem: Memory, hier: Hierarchy,
           options: EngineOptions, bw: list[float], lat: list[float]) -> tuple:
    """(interconnect s, stalls, bytes crossed, body s, compute start after dispatch, hits,
    lookups) of one run of `op` whose reads routed to `w` (weights) and `others`, its writes
    to `writes`, the caches' tally `seen`: the per-op roofline both paths share."""
    n, crossed, rt = len(lat), mem.crossed, options.runtime
    reads = w.copy()
    for k, v in others.items():
        reads[k] = reads.get(k, 0) + v
    traffic = reads.copy()
    for k, v in writes.items():
        traffic[k] = traffic.get(k, 0) + v
    timed = reads
    if op.stretch != 1.0:
        timed = reads.copy()
        for k, v in stretched(w, op.stretch).items():
            timed[k] += v - w[k]
    C = op.compute_s
    stall = [0.0] * n
    lb = crossed((traffic,))
    ic_s = 0.0
    if op.kind == "collective":
        if hier.interconnect is not None:
            payload = sum(x.nbytes for x in op.reads)
            ic_s = cost.all_reduce_s(payload, a.get("group", 1), hier.interconnect, rt)
        body, start_c = ic_s, 0.0
    elif options.overlap:
        L, src, T, top = _transfer(lb if timed is reads else crossed((timed, writes)),
                                   reads, bw, lat)
        if src >= 0:
            stall[src] += L
        stall[top] += max(0.0, T - C)
        body, start_c = L + max(C, T), L
    else:
        L, src, Tr, top_r = _transfer(crossed((timed,)), reads, bw, lat)
        _, _, Tw, top_w = _transfer(crossed((writes,)), {}, bw, lat)
        if src >= 0:
            stall[src] += L
        stall[top_r] += Tr
        stall[top_w] += Tw
        body, start_c = L + Tr + C + Tw, L + Tr
    return ic_s, tuple(stall), lb, body, start_c, tuple(seen[:n]), tuple(seen[n:])


class _Segment(NamedTuple):
    """The ops from one that empties every cache to the next such op, as they last ran."""

    infos: tuple[OpInfo, ...]  # their facts, kept alive so that identity means the same op
    names: tuple[str, ...]  # the tensors they look up in the caches
    start: tuple[tuple[int, ...], ...]  # the caches' sizes, then per cache those tensors'
    #                                      extents, as the first began
    ops: tuple[tuple, ...] | None  # per op: (routing, cache tally, _costs); None: not run
    end: tuple[tuple, ...]  # each cache's state after the last (LRU.save)


def _resets(op: OpInfo, caches: list[LRU]) -> bool:
    """Whether the first cache lookup of `op` empties every cache, whatever they held: its
    first read goes through them all and was ever larger than each (LRU.extent)."""
    cached = op.weights[1]
    if not cached:
        return False
    name, _, through, _, _ = cached[0]
    return len(through) == len(caches) and all(
        c.extent(name) > c.capacity_bytes for _, _, c in through)


def simulate_analytic(
    phases: Iterable[nx.DiGraph], hier: Hierarchy, footprint: Mapping[str, tuple[str, int]],
    sink: Sink, options: EngineOptions,
    on_phase: Callable[[nx.DiGraph], None] | None = None,
) -> None:
    """Run `phases` through the analytic model (the module docstring), one record per op
    execution to `sink`, as _simulate_per_op does, without redoing what repeats.

    An op whose facts and routing are those of its last run reuses its costs. And where an
    op's first read empties every (LRU) cache, whatever they held (a weight larger than each:
    _resets), what the caches do from there to the next such op depends only on those ops'
    facts and the extents their tensors start at: a segment that matches its last run is
    replayed, routing and costs, without a cache lookup (KV cache writes, which land where
    the cache has grown to, are still routed), and the caches are left as that run left them.
    """
    check_tp(hier, options.tp)
    phases = iter(phases)
    first = next(phases, None)
    if first is None:
        return
    mem = Memory(hier, footprint, activation_pool_bytes(first))
    rt = options.runtime
    n, launch, step_d, host_s = len(hier.levels), rt.launch_s, rt.launch_s + rt.step_s, rt.host_s
    info = OpFacts(hier.compute, rt, mem)
    bw = stream_bandwidths(hier, rt)
    lat = [lv.latency_s for lv in hier.levels]
    # equal routings (dicts compare without order) give equal costs unless two levels share a
    # latency: then the first level read breaks the tie, and order matters
    reuse = len(set(lat)) == n
    route_reads, route_writes = mem.route_reads, mem.route_writes
    last: dict[str, tuple] = {}  # op name -> (OpInfo, routing, seen, _costs) of its last run
    caches = list(mem.caches.values())
    replay = reuse and bool(caches) and all(type(c) is LRU for c in caches)
    segments: dict[tuple[str, int], _Segment] = {}  # (first op, its index): its last run
    known_caps: tuple[int, ...] = ()
    empties: dict[str, OpInfo] = {}  # op name -> its facts, known to empty the caches
    t = 0.0
    for G in itertools.chain((first,), phases):
        step, phase = G.graph.get("step", 0), G.graph.get("phase", "decode")
        mem.begin_step(step)
        graph_ops = topo_ops(G)
        infos = info.phase(graph_ops)
        starts: dict[int, int] = {}  # segment: first op's index -> the next segment's
        if replay:
            caps = tuple(c.capacity_bytes for c in caches)
            if caps != known_caps:  # what empties a cache depends on its size
                known_caps, empties = caps, {}
            at = []
            for k, ((name, _), op) in enumerate(zip(graph_ops, infos, strict=True)):
                # an extent only grows: once an op empties the caches, it always does
                if empties.get(name) is op or op.weights[1] and _resets(op, caches):
                    empties[name] = op
                    at.append(k)
            starts = dict(zip(at, at[1:], strict=False))
        stop, seg, rec, play = -1, 0, None, None
        key, ops = ("", 0), []
        d = step_d  # the first kernel of a step pays the step's host work
        issue = t + rt.step_s  # the host issues kernel i at issue + i host_s (as the DES)
        for k, ((name, a), op) in enumerate(zip(graph_ops, infos, strict=True)):
            if k == stop:  # a segment ends
                if play is not None:
                    for c, saved in zip(caches, play.end, strict=True):
                        c.load(saved, play.names)
                elif rec is not None:
                    segments[key] = rec._replace(
                        ops=tuple(ops), end=tuple(c.save(rec.names) for c in caches))
                play = rec = None
            if k in starts:  # one begins
                stop, seg, key = starts[k], k, (name, k)
                run = infos[k:stop]
                last_run = segments.get(key)
                if last_run is None or len(last_run.infos) != len(run) or not all(
                        map(operator.is_, last_run.infos, run)):
                    # other ops than last time (attention, whose reads grow): recorded only
                    # once they repeat
                    segments[key] = _Segment(tuple(run), (), (), None, ())
                elif last_run.ops is not None and last_run.start == (caps, *(
                        c.extents(last_run.names) for c in caches)):
                    play = last_run
                else:
                    names = tuple(e[0] for o in run for e in (*o.weights[1], *o.others[1]))
                    rec = _Segment(last_run.infos, names,
                                   (caps, *(c.extents(names) for c in caches)), None, ())
                    ops = []
            if host_s:
                issue += host_s
                if issue - t > d:
                    d = issue - t
            if play is not None:
                routed, seen, c = play.ops[k - seg]
                if op.results[1]:  # KV cache writes land where the cache has grown to
                    writes = route_writes(op.results)
                    if writes != routed[2]:
                        c = _costs(op, a, routed[0], routed[1], writes, seen, mem, hier,
                                   options, bw, lat)
            else:
                seen = [0] * (2 * n)
                w = route_reads(op.weights, seen)  # weights first, as the DES engine asks
                routed = (w, route_reads(op.others, seen), route_writes(op.results))
                m = last.get(name)
                if m is not None and m[0] is op and m[1] == routed and m[2] == seen:
                    c = m[3]
                else:
                    c = _costs(op, a, *routed, seen, mem, hier, options, bw, lat)
                    if reuse:
                        last[name] = (op, routed, seen, c)
                if rec is not None:
                    ops.append((routed, seen, c))
            ic_s, stall, lb, body, start_c, hits, looks = c
            sink(OpRecord(
                step, phase, name, op.op_type, op.kind, op.layer, t, t + d + body, d,
                op.compute_s, ic_s, stall, lb, op.flops, op.mops_bytes, t + d + start_c, 0.0,
                hits, looks,
            ))
            t += d + body
            d = launch
        if on_phase is not None:
            on_phase(G)


class AnalyticDevice:
    """One device evaluating op graphs one phase at a time, every op routed and timed on its
    own (_costs); its memory system (homes, caches) carries from one phase to the next. The
    serving loop (memwall/serving) runs its iterations on one; _simulate_per_op a run's."""

    def __init__(self, hier: Hierarchy, mem: Memory, options: EngineOptions) -> None:
        rt = options.runtime
        self.hier, self.mem, self.runtime, self.options = hier, mem, rt, options
        self.n = len(hier.levels)
        self.info = OpFacts(hier.compute, rt, mem)
        self.bw = stream_bandwidths(hier, rt)
        self.lat = [lv.latency_s for lv in hier.levels]

    def run_phase(self, G: nx.DiGraph, sink: Sink, t: float) -> float:
        """Run phase G from instant `t`, calling `sink` with each op's record; returns the
        instant it ends."""
        hier, mem, rt, n, bw, lat = self.hier, self.mem, self.runtime, self.n, self.bw, self.lat
        launch = rt.launch_s
        step, phase = G.graph.get("step", 0), G.graph.get("phase", "decode")
        mem.begin_step(step)
        graph_ops = topo_ops(G)
        d = launch + rt.step_s  # the first kernel of a step pays the step's host work
        issue = t + rt.step_s  # the host issues kernel i at issue + i host_s (as the DES)
        for (name, a), op in zip(graph_ops, self.info.phase(graph_ops), strict=True):
            if rt.host_s:
                issue += rt.host_s
                if issue - t > d:
                    d = issue - t
            seen = [0] * (2 * n)  # cache tally, as sim.memory.Memory.route_reads keeps it
            w = mem.route_reads(op.weights, seen)  # weights first, as the DES engine asks
            others = mem.route_reads(op.others, seen)
            ic_s, stall, lb, body, start_c, hits, looks = _costs(
                op, a, w, others, mem.route_writes(op.results), seen, mem, hier, self.options,
                bw, lat)
            sink(OpRecord(
                step, phase, name, op.op_type, op.kind, op.layer, t, t + d + body, d,
                op.compute_s, ic_s, stall, lb, op.flops, op.mops_bytes, t + d + start_c, 0.0,
                hits, looks,
            ))
            t += d + body
            d = launch
        return t


def _simulate_per_op(
    phases: Iterable[nx.DiGraph], hier: Hierarchy, footprint: Mapping[str, tuple[str, int]],
    sink: Sink, options: EngineOptions,
    on_phase: Callable[[nx.DiGraph], None] | None = None,
) -> None:
    """The analytic engine as first written, every op routed and timed on its own
    (AnalyticDevice): the reference tests/test_analytic_fast.py holds simulate_analytic to."""
    check_tp(hier, options.tp)
    phases = iter(phases)
    first = next(phases, None)
    if first is None:
        return
    dev = AnalyticDevice(hier, Memory(hier, footprint, activation_pool_bytes(first)), options)
    t = 0.0
    for G in itertools.chain((first,), phases):
        t = dev.run_phase(G, sink, t)
        if on_phase is not None:
            on_phase(G)
