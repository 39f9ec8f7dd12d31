"""The analytic engine: a per-op roofline on the same graphs, memory system and cost model.

Each op takes dispatch + the longest first-byte latency of its reads + max(compute, the
busiest level's bytes / sustained bandwidth) with overlap on; with overlap off, reads then
compute then writes. Nothing overlaps across ops, nothing contends, so it is what the
discrete-event engine gives with prefetch depth 0, and a fast estimate for sweeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import networkx as nx

from . import cost
from .engine import DEFAULT_OPTIONS, EngineOptions, OpFacts, Sink, check_tp, topo_order
from .hierarchy import Hierarchy
from .memory import Memory
from .trace import OpRecord, level_bytes


def _transfer(traffic: dict[int, int], reads: dict[int, int], bw: list[float], lat: list[float],
              paths: list[tuple[int, ...]]):
    """(first-byte latency, its level or -1, time at the busiest level, that level) of the
    flows `traffic`, whose reads (the part that pays latency) are `reads`."""
    lb = level_bytes(traffic, paths, len(bw))
    busy = [b / w for b, w in zip(lb, bw, strict=True)]
    top = max(range(len(bw)), key=busy.__getitem__)
    first = max(reads, key=lat.__getitem__) if reads else -1
    return (lat[first] if first >= 0 else 0.0), first, busy[top], top


def simulate_analytic(
    phases: Iterable[nx.DiGraph], hier: Hierarchy, footprint: Mapping[str, tuple[str, int]],
    sink: Sink, options: EngineOptions = DEFAULT_OPTIONS,
    on_phase: Callable[[nx.DiGraph], None] | None = None,
) -> None:
    check_tp(hier, options.tp)
    mem = Memory(hier, footprint)
    n, d = len(hier.levels), hier.compute.dispatch_s
    info = OpFacts(hier.compute)
    bw = [lv.sustained_bytes_per_s for lv in hier.levels]
    lat = [lv.latency_s for lv in hier.levels]
    t = 0.0
    for G in phases:
        mem.begin_phase(G)
        step, phase = G.graph.get("step", 0), G.graph.get("phase", "decode")
        nodes = G.nodes
        for name in topo_order(G):
            a = nodes[name]
            op = info(name, a)
            reads = mem.reads(op.reads)
            writes: dict[int, int] = {}
            for w in op.writes:
                mem.write(w, writes)
            traffic = dict(reads)
            for k, v in writes.items():
                traffic[k] = traffic.get(k, 0) + v
            C = op.compute_s
            stall = [0.0] * n
            ic_s = 0.0
            if a["kind"] == "collective":
                if hier.interconnect is not None:
                    payload = sum(x.nbytes for x in op.reads)
                    ic_s = cost.all_reduce_s(payload, a.get("group", 1), hier.interconnect)
                body, start_c = ic_s, 0.0
            elif options.overlap:
                L, src, T, top = _transfer(traffic, reads, bw, lat, mem.paths)
                if src >= 0:
                    stall[src] += L
                stall[top] += max(0.0, T - C)
                body, start_c = L + max(C, T), L
            else:
                L, src, Tr, top_r = _transfer(reads, reads, bw, lat, mem.paths)
                _, _, Tw, top_w = _transfer(writes, {}, bw, lat, mem.paths)
                if src >= 0:
                    stall[src] += L
                stall[top_r] += Tr
                stall[top_w] += Tw
                body, start_c = L + Tr + C + Tw, L + Tr
            sink(OpRecord(
                step, phase, name, a["op"], a["kind"], a["layer"], t, t + d + body, d, C, ic_s,
                tuple(stall), level_bytes(traffic, mem.paths, n), op.flops, op.mops_bytes,
                t + d + start_c,
            ))
            t += d + body
        if on_phase is not None:
            on_phase(G)
