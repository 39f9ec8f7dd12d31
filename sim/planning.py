"""What both engines need of each op before it runs, and what they share: their options, the
sink they call, the tensor-parallel check, an op's MOPs, and OpFacts, the per-op plans (compute
time, and the routing of its reads and writes through sim.memory) derived once per op and kept
while the op graph reuses the node.

The discrete-event engine (sim.engine) and the analytic one (sim.analytic) both import this
module; neither imports the other. The runtime (sim/runtime.py) is in the options: the
software stack the ops run on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from . import cost
from .errors import MemwallError
from .hierarchy import Compute, Hierarchy
from .memory import Memory, Plan, activation_bytes
from .opgraph import Tensor, op_mops_bytes
from .runtime import Runtime
from .trace import OpRecord

Sink = Callable[[OpRecord], None]
MANY_PARTS = 2  # a kernel of more parts has its costs looked up by their identities


@dataclass(frozen=True)
class EngineOptions:
    """How either engine runs (both take the same options)."""

    runtime: Runtime  # the software stack
    prefetch_depth: int | None = None  # None: the runtime's prefetch_depth
    overlap: bool = True  # stream operands while computing (double buffering)
    tp: int = 1  # devices; collectives run over the hierarchy's interconnect

    def __post_init__(self) -> None:
        if self.prefetch_depth is not None and not 0 <= self.prefetch_depth <= 1024:
            raise MemwallError(f"prefetch depth = {self.prefetch_depth}: expected an integer "
                               "from 0 (no prefetch) to 1024")
        if self.tp < 1:
            raise MemwallError(f"tp = {self.tp}: expected an integer >= 1")


def stream_bandwidths(hier: Hierarchy, runtime: Runtime) -> list[float]:
    """Bytes/s each level streams at under `runtime`: its sustained bandwidth (what a
    streaming benchmark reaches) times the runtime's memory efficiency, innermost first."""
    return [lv.sustained_bytes_per_s * runtime.memory_efficiency for lv in hier.levels]


def stretched(traffic: dict[int, int], factor: float) -> dict[int, int]:
    """`traffic` (level -> bytes) as the bytes a stream at `factor` times their time moves
    (OpInfo.stretch): what an engine times, never what it counts."""
    if factor == 1.0:
        return traffic
    return {k: round(v * factor) for k, v in traffic.items()}


def check_tp(hier: Hierarchy, tp: int) -> None:
    """Refuse a tensor-parallel group the hierarchy has no interconnect for, or too large."""
    if tp <= 1:
        return
    ic = hier.interconnect
    if ic is None:
        raise MemwallError(f"{hier.name}: --tp {tp} needs an interconnect section in {hier.path}")
    if tp > ic.max_devices:
        raise MemwallError(
            f"{hier.name}: --tp {tp} exceeds interconnect.max_devices = {ic.max_devices}"
        )


class OpInfo(NamedTuple):
    """What an engine needs of one op beyond its graph attributes."""

    reads: tuple[Tensor, ...]  # the node's own tuple, to tell when it changes
    writes: tuple[Tensor, ...]
    flops: int
    compute_s: float
    mops_bytes: int
    weights: Plan  # routing of the weight reads
    others: Plan  # routing of the activation and KV cache reads
    results: Plan  # routing of the writes
    act_level: int  # where activations lived when the plans were made
    op_type: str  # the node's "op", "kind" and "layer", for the records
    kind: str
    layer: int
    prefetch: bool  # has weight reads to request ahead
    act_bytes: int  # activation bytes it reads and writes (memory.activation_bytes)
    stretch: float  # its weight streams take this times their bytes' time (the runtime's
    #                 memory_by_dtype for its weights' precision, against memory_efficiency)


class OpFacts:
    """Per-op facts both engines need, derived once per op name and reused while the node's
    tuples are the same objects (decode steps reuse one template graph) and activations stay
    in the same level."""

    def __init__(self, compute: Compute, runtime: Runtime, mem: Memory) -> None:
        self.compute = compute
        self.runtime = runtime
        self.mem = mem
        self._known: dict[str, OpInfo] = {}
        # (compute s, MOPs) of kernels with many parts, by the parts' identities, this phase:
        # the layers of a serving batch share their attention parts (workloads/batch.py)
        self._by_parts: dict[tuple[int, ...], tuple[tuple, float, int]] = {}

    def _costs(self, a: dict) -> tuple[float, int]:
        """(compute time, MOPs) of the op with attributes `a`."""
        parts = a.get("parts")
        if parts is None or len(parts) < MANY_PARTS:
            return cost.op_compute_s(a, self.compute, self.runtime), op_mops_bytes(a)
        key = tuple(map(id, parts))  # the entry holds `parts`, so these ids stay its own
        got = self._by_parts.get(key)
        if got is None:
            got = self._by_parts[key] = (
                parts, cost.op_compute_s(a, self.compute, self.runtime), op_mops_bytes(a))
        return got[1], got[2]

    def _derive(self, name: str, a: dict, act_bytes: int) -> OpInfo:
        reads, writes, mem = a["reads"], a["writes"], self.mem
        weights = [t for t in reads if t.cls == "weight"]
        others = [t for t in reads if t.cls != "weight"] if weights else reads
        w_plan = mem.plan_reads(weights)
        compute_s, mops = self._costs(a)
        rt = self.runtime
        e = rt.memory_by_dtype.get(weights[0].dtype) if weights and rt.memory_by_dtype else None
        got = self._known[name] = OpInfo(
            reads, writes, a["flops"], compute_s, mops,
            w_plan,
            mem.plan_reads(others),
            mem.plan_writes(writes),
            mem.act_level,
            a["op"], a["kind"], a["layer"],
            bool(w_plan[0] or w_plan[1]),
            act_bytes,
            rt.memory_efficiency / e if e else 1.0,
        )
        return got

    def phase(self, graph_ops: list[tuple[str, dict]]) -> list[OpInfo]:
        """Begin a phase of these (name, attributes), in order: home its activations
        (Memory.begin_phase, sized by its largest op) and return the facts of every op."""
        known, out = self._known, []
        self._by_parts.clear()
        pool, stale = 0, []
        for i, (name, a) in enumerate(graph_ops):
            got = known.get(name)
            if got is None or got.reads is not a["reads"] or got.writes is not a["writes"] \
                    or got.flops != a["flops"]:
                b = activation_bytes(a)
                stale.append((i, b))
            else:
                b = got.act_bytes
            out.append(got)
            if b > pool:
                pool = b
        mem = self.mem
        mem.begin_phase(pool)
        act_level = mem.act_level
        for i, b in stale:
            name, a = graph_ops[i]
            out[i] = self._derive(name, a, b)
        for i, got in enumerate(out):
            if got.act_level != act_level:  # planned for another home of the activations
                name, a = graph_ops[i]
                out[i] = self._derive(name, a, got.act_bytes)
        return out
