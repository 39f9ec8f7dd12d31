"""FLOPs, MOPs and arithmetic intensity of ops, phases and whole runs (the paper's conventions).

A multiply-accumulate is 2 FLOPs. MOPs are the bytes an op reads and writes at its boundary:
every operand once, every result once (`Tensor.nbytes`), whatever the memory hierarchy would
cache or a runtime would fuse (a fused kernel's MOPs are its ops'). Arithmetic intensity =
FLOPs / MOPs. A tp > 1 spec counts the graph of one device.

An op with `parts` (a grouped GEMM over routed experts) counts each part at its own boundary,
as the engines do (sim/opgraph.py).

Whole-run totals do not walk every decode graph: a decode step differs from the next only in
the ops its builder declared (the graph's `per_step`, block.StepRule), so run_counts sums the
rest of one decode graph once, times the number of steps, and sums the rules over the steps,
once per group of rules alike (`StepRule.key`: the attention cores of layers alike), times the
group's size, in closed form wherever a rule is linear in the step (`series`).
tests/test_counts.py checks this against the sum over every graph of phases().
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import networkx as nx

from sim.opgraph import op_mops_bytes
from workloads.block import StepRule
from workloads.graph import build_phase, build_with_rules
from workloads.model import parameter_shapes, tensor_bytes, weight_bytes
from workloads.spec import RunSpec


@dataclass(frozen=True, slots=True)
class Counts:
    flops: int = 0  # FLOPs
    mops_bytes: int = 0  # bytes read and written at op boundaries

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.flops + other.flops, self.mops_bytes + other.mops_bytes)

    def __mul__(self, n: int) -> Counts:
        return Counts(self.flops * n, self.mops_bytes * n)

    @property
    def arithmetic_intensity(self) -> float:  # FLOP / byte
        return self.flops / self.mops_bytes if self.mops_bytes else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"flops": self.flops, "mops_bytes": self.mops_bytes,
                "arithmetic_intensity": self.arithmetic_intensity}


def op_counts(G: nx.DiGraph) -> dict[str, Counts]:
    """Counts of every op of G, by node name."""
    return {n: Counts(a["flops"], op_mops_bytes(a)) for n, a in G.nodes(data=True)}


def graph_counts(G: nx.DiGraph) -> Counts:
    """Total counts of one phase graph."""
    total = Counts()
    for c in op_counts(G).values():
        total += c
    return total


class PhaseCounts(Sequence[Counts]):
    """Counts of each phase of a run (index = step), each worked out when asked, so that a
    run of 10^7 steps costs no memory; `decode` is the sum of the decode steps."""

    def __init__(self, first: Counts, n_decode: int, step: Callable[[int], Counts],
                 decode: Counts) -> None:
        self.first, self.n_decode, self.step, self.decode = first, n_decode, step, decode

    def __len__(self) -> int:
        return 1 + self.n_decode

    @overload
    def __getitem__(self, i: int) -> Counts: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Counts, ...]: ...
    def __getitem__(self, i: int | slice) -> Counts | tuple[Counts, ...]:
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        k = i + len(self) if i < 0 else i
        if not 0 <= k < len(self):
            raise IndexError(i)
        return self.first if k == 0 else self.step(k)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RunCounts:
    """Counts of a whole run (phase 0 plus every decode step) of one device."""

    total: Counts
    by_op_type: dict[str, Counts]
    by_kind: dict[str, Counts]
    by_layer: dict[int, Counts]  # -1: embeddings, final norm, LM head, pooler
    phases: PhaseCounts = field(repr=False)  # index = step


EXACT_STEPS = 64  # a span of decode steps this short is summed step by step


def series(f: Callable[[int], tuple[int, ...]], a: int, b: int) -> tuple[int, ...]:
    """sum of f(k) for k = a..b, elementwise, without visiting every k where f is linear:
    a span whose two ends, their neighbours and its middle lie on one line (exactly: the counts
    are integers) is summed in closed form, any other is halved, down to EXACT_STEPS, so that
    attention (linear in the position, with a kink where a window fills) costs O(log n).

    >>> series(lambda k: (3 * k + 1, min(k, 500)), 1, 10**6)
    (1500002500000, 499875250)
    """
    if b - a < EXACT_STEPS:
        return tuple(map(sum, zip(*(f(k) for k in range(a, b + 1)), strict=True)))
    n, m = b - a, (a + b) // 2
    fa, fa1, fm, fb1, fb = f(a), f(a + 1), f(m), f(b - 1), f(b)
    if all((x1 - x0) * n == y - x0 == (y - y1) * n and (xm - x0) * n == (y - x0) * (m - a)
           for x0, x1, xm, y1, y in zip(fa, fa1, fm, fb1, fb, strict=True)):
        return tuple((n + 1) * x0 + (x1 - x0) * (n * (n + 1) // 2) for x0, x1 in zip(fa, fa1,
                                                                                      strict=True))
    return tuple(x + y for x, y in zip(series(f, a, m), series(f, m + 1, b), strict=True))


def run_counts(spec: RunSpec) -> RunCounts:
    """Counts of every phase of `spec`, grouped by op type, kind and layer (see module doc)."""
    by_op: dict[str, Counts] = defaultdict(Counts)
    by_kind: dict[str, Counts] = defaultdict(Counts)
    by_layer: dict[int, Counts] = defaultdict(Counts)

    def add(G: nx.DiGraph, times: int, skip: frozenset[str] = frozenset()) -> Counts:
        """Add `times` x the ops of G (but `skip`) to the groups; return one time's total."""
        once = Counts()
        for n, c in op_counts(G).items():
            if n in skip:
                continue
            a = G.nodes[n]
            by_op[a["op"]] += c * times
            by_kind[a["kind"]] += c * times
            by_layer[a["layer"]] += c * times
            once += c
        return once

    first = add(build_phase(spec, 0, check=False), 1)
    n_decode = spec.n_phases - 1
    if not n_decode:
        return RunCounts(first, dict(by_op), dict(by_kind), dict(sorted(by_layer.items())),
                         PhaseCounts(first, 0, lambda k: Counts(), Counts()))
    G, rules = build_with_rules(spec, 1, check=False)
    static_step = add(G, n_decode, frozenset(G.graph["per_step"]))  # all but the rules'
    groups: dict[object, list[StepRule]] = defaultdict(list)
    for r in rules:
        groups[r.key].append(r)

    def flat(rule: StepRule, step: int) -> tuple[int, ...]:  # (flops, mops) of each node
        scratch: list[dict] = [{} for _ in rule.nodes]
        rule.write(step, scratch)
        return tuple(x for a in scratch for x in (a["flops"], op_mops_bytes(a)))

    def step_total(step: int) -> Counts:
        total = static_step
        for rs in groups.values():
            v = flat(rs[0], step)
            total += Counts(sum(v[0::2]), sum(v[1::2])) * len(rs)
        return total

    decode = static_step * n_decode
    nodes = G.nodes
    for rs in groups.values():
        sums = series(lambda k, r=rs[0]: flat(r, k), 1, n_decode)
        per_node = [Counts(sums[2 * j], sums[2 * j + 1]) for j in range(len(rs[0].nodes))]
        for r in rs:
            for name, c in zip(r.nodes, per_node, strict=True):
                a = nodes[name]
                by_op[a["op"]] += c
                by_kind[a["kind"]] += c
                by_layer[a["layer"]] += c
                decode += c
    return RunCounts(first + decode, dict(by_op), dict(by_kind), dict(sorted(by_layer.items())),
                     PhaseCounts(first, n_decode, step_total, decode))


def kv_cache_bytes(spec: RunSpec, positions: int | None = None,
                   batch: int | None = None) -> int:
    """KV cache bytes one device holds after `positions` (default: the run's) positions of
    `batch` (default: the run's) sequences: K and V per layer (its KV heads on this device),
    a windowed layer only its last `window` positions, an MLA layer its latent and rotary key
    (replicated on every device)."""
    m = spec.model
    if m.arch != "decoder":
        return 0
    n = spec.positions if positions is None else positions
    dt, B = spec.precision.kv_cache, spec.batch if batch is None else batch
    total = 0
    for i in range(m.n_layers):
        w = m.window(i)
        kept = min(n, w) if w else n
        if m.mla:
            total += tensor_bytes((B, 1, kept, m.kv_lora_rank + m.rotary_dims), dt)
        else:
            total += 2 * tensor_bytes((B, m.n_kv_heads // spec.tp, kept, m.d_head), dt)
    return total


def describe(spec: RunSpec) -> dict:
    """JSON-ready counts of a run, SI units (FLOPs, bytes, FLOP/byte), one device of tp:
    parameters (total, and active per token: all but the routed experts a token skips), the
    weight bytes, the KV cache at the end of the run and per position of one sequence (before
    any window fills), and the FLOPs and MOPs (a mixture of experts: for the run's routing)."""
    m, p, rc = spec.model, spec.precision, run_counts(spec)
    shapes = parameter_shapes(m, spec.tp)
    per_token = kv_cache_bytes(spec, positions=1, batch=1)
    out: dict = {
        "workload": m.name, "arch": m.arch, "batch": spec.batch, "prompt_len": spec.prompt_len,
        "gen_len": spec.gen_len, "tp": spec.tp,
        "precision": p.as_dict(),
        "routing": ({"routing": spec.routing.label, "seed": spec.routing.seed}
                    if m.n_experts else None),
        "params": m.n_params,
        "active_params": m.active_params,
        "params_per_device": sum(math.prod(s) for s in shapes.values()),
        "weight_bytes_per_device": sum(weight_bytes(m, s, p.of_weight(n, s))
                                       for n, s in shapes.items()),
        "kv_cache_bytes_per_device": kv_cache_bytes(spec),
        "kv_bytes_per_token": per_token,
        **rc.total.as_dict(),
        "by_op_type": {k: c.as_dict() for k, c in sorted(rc.by_op_type.items(),
                                                         key=lambda kv: -kv[1].flops)},
        "by_kind": {k: c.as_dict() for k, c in rc.by_kind.items()},
        "by_layer": [{"layer": i, **c.as_dict()} for i, c in rc.by_layer.items()],
    }
    first = "encode" if m.arch == "encoder" else "prefill"
    phases = {first: {"tokens": spec.prompt_len, **rc.phases[0].as_dict()}}
    if len(rc.phases) > 1:
        phases["decode"] = {"steps": len(rc.phases) - 1, **rc.phases.decode.as_dict(),
                            "first_step": rc.phases[1].as_dict(),
                            "last_step": rc.phases[-1].as_dict()}
    out["phases"] = phases
    return out


def format_describe(d: dict) -> str:
    """A compact text table of `describe`'s output."""
    p = d["precision"]
    emb = f"  embeddings {p['embeddings']}" if "embeddings" in p else ""
    active = (f" (active {_si(d['active_params'])} per token)"
              if d["active_params"] != d["params"] else "")
    routing = (f"  routing {d['routing']['routing']} (seed {d['routing']['seed']})"
               if d.get("routing") else "")
    lines = [
        f"{d['workload']} ({d['arch']})  batch {d['batch']}  prompt {d['prompt_len']}  "
        f"gen {d['gen_len']}  tp {d['tp']}  weights {p['weights']}  activations "
        f"{p['activations']}  kv {p['kv_cache']}{emb}{routing}",
        f"params {_si(d['params'])}{active}  per device {_si(d['params_per_device'])} "
        f"({_si(d['weight_bytes_per_device'])}B)  KV cache {_si(d['kv_cache_bytes_per_device'])}B"
        f" ({_si(d['kv_bytes_per_token'])}B per token)",
        f"{'':24s}{'FLOPs':>12s}{'MOPs (B)':>12s}{'FLOP/B':>10s}",
        _row("total", d),
    ]
    for name, ph in d["phases"].items():
        label = f"{name} ({ph['steps']} steps)" if "steps" in ph else f"{name} ({ph['tokens']} tok)"
        lines.append(_row(label, ph))
        if "steps" in ph:
            lines += [_row("  first step", ph["first_step"]), _row("  last step", ph["last_step"])]
    lines.append("by kind")
    lines += [_row("  " + k, c) for k, c in d["by_kind"].items()]
    lines.append("by op type")
    lines += [_row("  " + k, c) for k, c in d["by_op_type"].items()]
    return "\n".join(lines)


def _row(label: str, c: dict) -> str:
    return (f"{label:24s}{_si(c['flops']):>12s}{_si(c['mops_bytes']):>12s}"
            f"{c['arithmetic_intensity']:>10.3g}")


def _si(x: float) -> str:
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}"
    return f"{x:.3g} "

