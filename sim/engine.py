"""The discrete-event engine: one device running op graphs phase after phase on SimPy.

The compute units run ops in topological order, one at a time, as a stream does. Each op:
dispatch overhead, then its transfers (one flow per source level, through the Fabric) and its
compute. With overlap on (double buffering) compute starts once the first bytes of every
operand have arrived and runs alongside the streams; with overlap off it waits for all reads,
and writes start after it. When op i begins, the weights of ops i+1..i+depth are requested
(prefetch); those flows share bandwidth with op i's own. Phases are barriers (a decode step
needs the token sampled by the one before), so nothing crosses from one phase to the next.

SimPy is the clock: the device is a process that sleeps once per op, until the op ends, and a
collective holds the links, a Resource. Only this process starts flows, at op boundaries, so
the Fabric can solve an op's transfers ahead (see fabric.py) and nothing can change them while
the process sleeps.

The hardware is the Hierarchy; the software stack is the Runtime (sim/runtime.py): each
kernel pays its launch overhead, the first kernel of a step also the step's host work, a
kernel waits for the host to issue it when the host (`kernels.host` per kernel, running ahead
from the step's start) is slower than the device, every level streams at its sustained
bandwidth times the runtime's memory efficiency, and weights are fetched
`prefetch_depth` ops ahead (the runtime's, unless the options say otherwise).

Attribution (every second of an op goes to exactly one cause; they add up to its elapsed time):
    dispatch               the op's launch overhead, or its wait for the host to issue it,
                           whichever is longer (and, first in a step, the step's host work)
    compute                the op's compute time
    stall on a level       waiting for first bytes is charged to the level whose latency was
                           still running; waiting for bytes after that (or, overlap off, for
                           the transfer) to the level that limited the last transfer to finish
    interconnect           a collective's time on the links
A prefetch's bytes are charged to the op that uses them (its record's `bytes`, and the cache
hits and lookups of its reads); its record's `prefetch_s` says how long before the op began
they were requested, so their time can be counted with them (sim.plot.roofline_points).

What it knows of each op before running it (compute time, the routing of its reads and writes)
comes from sim.planning, which the analytic engine shares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter

import networkx as nx
import simpy

from . import cost
from .fabric import Fabric, Flow
from .hierarchy import Hierarchy
from .memory import Memory, activation_pool_bytes
from .opgraph import topo_ops
from .planning import EngineOptions, OpFacts, Sink, check_tp, stream_bandwidths, stretched
from .trace import OpRecord


class Device:
    """One device running op graphs one phase at a time: its memory system (homes, and the
    caches whose contents carry from one phase to the next), the fabric and the options.
    `simulate` runs a run's phases on one; a caller that decides each phase only when the one
    before has ended (the serving loop, memwall/serving) builds its own Memory and Device and
    runs each graph as a SimPy process body, `run_phase`, in its own Environment."""

    def __init__(self, env: simpy.Environment, hier: Hierarchy, mem: Memory,
                 options: EngineOptions) -> None:
        rt = options.runtime
        self.env = env
        self.hier = hier
        self.runtime = rt
        self.n = len(hier.levels)
        self.lat = [lv.latency_s for lv in hier.levels]
        self.mem = mem
        self.fabric = Fabric(stream_bandwidths(hier, rt), self.mem.paths)
        self.links = simpy.Resource(env, capacity=1)  # this device's interconnect ports
        self.info = OpFacts(hier.compute, rt, self.mem)
        depth = options.prefetch_depth
        self.depth = rt.prefetch_depth if depth is None else depth
        self.overlap = options.overlap

    def run_phase(self, G: nx.DiGraph, sink: Sink):  # SimPy process body
        env, mem, fabric, info = self.env, self.mem, self.fabric, self.info
        graph_ops = topo_ops(G)
        step, phase = G.graph.get("step", 0), G.graph.get("phase", "decode")
        mem.begin_step(step)
        ops = info.phase(graph_ops)
        # op index -> its prefetched weights: (flows, traffic, cache tally, requested at)
        pre: dict[int, tuple[list[Flow], dict[int, int], list[int], float]] = {}
        issued = 0  # highest op index whose weights were requested
        last = len(graph_ops) - 1
        rt = self.runtime
        launch, n, depth = rt.launch_s, self.n, self.depth
        n2 = 2 * n  # a cache tally: bytes each level's cache served, then bytes that looked
        step_d = launch + rt.step_s  # the first kernel of a step pays its host work
        host, issue = rt.host_s, env.now + rt.step_s  # the host issues kernel i at issue + i host
        route, route_writes, lat, crossed = mem.route_reads, mem.route_writes, self.lat, mem.crossed
        flows_of = fabric.start_many
        timeout, drain = env.timeout, fabric.drain
        overlap = self.overlap
        new_tuple = tuple.__new__  # an OpRecord without NamedTuple's Python-level __new__
        for i, (name, a) in enumerate(graph_ops):
            op = ops[i]
            d = launch if i else step_d
            t0 = env.now  # flows started at t0 are due then: the fabric moves on to t0 in drain
            if host:  # a host slower than the device: the kernel waits for its issue
                issue += host
                if issue - t0 > d:
                    d = issue - t0
            own = pre.pop(i, None)
            if issued < i:
                issued = i
            while issued < last and issued < i + depth:
                issued += 1
                ahead = ops[issued]
                if ahead.prefetch:
                    seen = [0] * n2
                    traffic = route(ahead.weights, seen)
                    pre[issued] = (flows_of(stretched(traffic, ahead.stretch), None, lat, t0),
                                   traffic, seen, t0)
            td = t0 + d
            early = 0.0
            if own is not None:
                w_flows, traffic, seen, asked = own
                early = t0 - asked
            elif op.prefetch:
                seen = [0] * n2
                traffic = route(op.weights, seen)
                w_flows = flows_of(stretched(traffic, op.stretch), None, lat, td)
            else:
                w_flows, traffic, seen = [], {}, [0] * n2
            stall = [0.0] * n
            ic_s = 0.0
            if op.kind == "collective":
                yield from self._collective(a, w_flows, td)
                ic_s, cs = env.now - td, td
                reads = writes = {}
            else:
                reads = route(op.others, seen)
                writes = route_writes(op.results)
                C = op.compute_s
                if overlap:
                    flows = w_flows + flows_of(reads, writes, lat, td)
                    cs, blame = td, -1
                    for f in flows:
                        if f.t_first > cs:
                            cs, blame = f.t_first, f.source
                    if cs > td:
                        stall[blame] += cs - td
                    drain(flows)
                    ce = end = cs + C
                    late = None  # the flow whose last byte arrives after compute, latest
                    for f in flows:
                        if f.t_last > end:
                            end, late = f.t_last, f
                    if late is not None:  # _charge, inline: the wait after compute
                        wait = end - ce
                        latency = end - (ce if ce > late.t_end else late.t_end)  # >= 0
                        if latency > wait:
                            latency = wait
                        stall[late.source] += latency
                        stall[late.bottleneck] += wait - latency
                else:
                    cs, end = self._serial(w_flows, reads, writes, C, td, stall)
                yield timeout(end - t0)
            sink(new_tuple(OpRecord, (
                step, phase, name, op.op_type, op.kind, op.layer, t0, env.now, d,
                op.compute_s, ic_s, tuple(stall), crossed((traffic, reads, writes)), op.flops,
                op.mops_bytes, cs, early, tuple(seen[:n]), tuple(seen[n:]),
            )))

    def _serial(self, w_flows: list[Flow], reads: dict[int, int], writes: dict[int, int],
                C: float, td: float, stall: list[float]) -> tuple[float, float]:
        """Overlap off: all reads, then compute, then the writes. Returns (compute start, end)
        and charges the waits to `stall`."""
        fabric = self.fabric
        flows = w_flows + fabric.start_many(reads, None, self.lat, td)
        fabric.drain(flows)
        cs = td
        for f in flows:
            if f.t_last > cs:
                cs = f.t_last
        _charge(stall, flows, td, cs)
        ce = cs + C
        wf = fabric.start_many({}, writes, self.lat, ce)
        fabric.drain(wf)
        end = max([ce, *(f.t_last for f in wf)])
        _charge(stall, wf, ce, end)
        return cs, end

    def _collective(self, a: dict, w_flows: list[Flow], td: float):
        """A collective holds the links for the time its topology implies (cost.all_reduce_s);
        the other devices run the same op at the same time, so one device stands for all."""
        env, ic = self.env, self.hier.interconnect
        if td > env.now:
            yield env.timeout(td - env.now)
        payload = sum(t.nbytes for t in a["reads"])
        if ic is not None:
            with self.links.request() as req:
                yield req
                yield env.timeout(cost.all_reduce_s(payload, a.get("group", 1), ic,
                                                    self.runtime))
        self.fabric.drain(w_flows)
        t_last = max((f.t_last for f in w_flows), default=env.now)
        if t_last > env.now:
            yield env.timeout(t_last - env.now)


_T_LAST = attrgetter("t_last")


def _charge(stall: list[float], flows: list[Flow], t_from: float, t_to: float) -> None:
    """Charge the wait [t_from, t_to), which ended with the last byte of the latest flow, to
    that flow: its final latency to its source level, the rest to its bottleneck level."""
    wait = t_to - t_from
    if wait <= 0 or not flows:
        return
    f = max(flows, key=_T_LAST)
    latency = min(wait, max(0.0, t_to - max(t_from, f.t_end)))
    stall[f.source] += latency
    stall[f.bottleneck] += wait - latency


def simulate(
    phases: Iterable[nx.DiGraph], hier: Hierarchy, footprint: Mapping[str, tuple[str, int]],
    sink: Sink, options: EngineOptions,
    on_phase: Callable[[nx.DiGraph], None] | None = None,
) -> None:
    """Run every phase in order on one device (the others of a tensor-parallel group are
    identical), calling `sink` with one OpRecord per op as it finishes."""
    check_tp(hier, options.tp)
    phases = iter(phases)
    first = next(phases, None)
    if first is None:
        return
    env = simpy.Environment()
    dev = Device(env, hier, Memory(hier, footprint, activation_pool_bytes(first)), options)

    def driver():
        for G in itertools.chain((first,), phases):
            yield from dev.run_phase(G, sink)
            if on_phase is not None:
                on_phase(G)

    env.process(driver())
    env.run()
