"""The FFN of a mixture-of-experts layer (Mixtral, Qwen2-MoE, DeepSeek-V2 and V3).

Ops of layer i, after its norm (x: (B, T, d), N = B x T token rows, k = top_k, f = d_ff_expert
/ tp, the routed experts' hidden rows stacked (N k, .)):

    h{i}.moe.router      matmul  x @ router.T (+ bias, DeepSeek-V3)          -> (B, T, E)
    h{i}.moe.shared.*    the shared experts: a dense FFN of width d_ff_shared (if any), and
    h{i}.moe.shared_scale  Qwen2-MoE's sigmoid gate on it, matmul (1, d)     -> (B, T, 1)
    h{i}.moe.route       vector  softmax over the E scores, top-k            -> (B, T, k)
    h{i}.moe.up          matmul  grouped GEMM: for each chosen expert e, its M_e tokens'
                                 rows (M_e, d) @ [gate_e; up_e].T            -> (N k, 2 f)
    h{i}.moe.act         vector  SwiGLU (or GeGLU)                           -> (N k, f)
    h{i}.moe.down        matmul  grouped GEMM: (M_e, f) @ down_e.T           -> (N k, d)
    h{i}.moe.combine     vector  the k outputs of each token weighted and summed, plus the
                                 shared experts' (times their gate)          -> (B, T, d)
    h{i}.moe.all_reduce  (tp > 1)

`up` and `down` read only the chosen experts' weights (workloads/routing.py picks them per
phase); their `parts` are one GEMM per chosen expert, M_e rows each, so each is timed by its
own shape, and MOPs count each at its own boundary (an expert reads its M_e token rows). They
change per decode step (a StepRule): layers whose routing is alike at every step (uniform)
share a rule key. FLOPs: router 2 N d E (+ N E); route 5 N E, a softmax (DeepSeek-V3's sigmoid
4 N E; top-k selection, and scaling or renormalising the k weights, not counted);
up 2 N k d 2 f; act per element (swiglu 5, geglu 9) x N k f; down 2 N k f d; combine
2 N k d, plus N d to add the shared experts' output and, for Qwen2-MoE's gate, N d to scale it
and 4 N for the sigmoid. Tensor parallel: each expert split like a dense FFN (see
model.parameter_shapes), one all-reduce after combine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.opgraph import Tensor
from workloads.block import FLOPS_PER_ELEMENT, PhaseBuilder, StepRule
from workloads.model import compute_dtype, tensor_bytes
from workloads.spec import RunSpec


class _Experts:
    """The routing of one phase's MoE layers, drawn once per step for all of them."""

    def __init__(self, b: PhaseBuilder) -> None:
        self.spec = b.spec
        self.layers = {layer: j for j, layer in enumerate(b.m.moe_layers)}
        self._step: int | None = None
        self._routes: list = []

    def at(self, step: int, layer: int) -> tuple[np.ndarray, np.ndarray]:
        if step != self._step:
            self._routes, self._step = self.spec.route(step), step
        return self._routes[self.layers[layer]]


def expert_home_order(spec: RunSpec) -> list[str]:
    """The routed experts' weights in the order placement should home them: the most often
    chosen first (Routing.popularity), rank by rank across the MoE layers, so that a tier
    too small for all of them leaves the coldest experts to the next one, as a runtime that
    places experts by their router's statistics would."""
    m = spec.model
    layers = m.moe_layers
    order = spec.routing.popularity(layers, m.n_experts)
    return [f"h{layer}.moe.e{int(e)}.{proj}.weight" for r in range(m.n_experts)
            for layer, experts in zip(layers, order, strict=True) for e in (experts[r],)
            for proj in ("gate", "up", "down")]


def moe_ffn(b: PhaseBuilder, i: int, x: Tensor, after: tuple[str, ...]) -> tuple[Tensor, str]:
    """Add layer i's mixture-of-experts FFN reading x; returns its output and node."""
    m, spec, p = b.m, b.spec, f"h{i}.moe."
    N, k, E, d = b.rows, m.top_k, m.n_experts, m.d_model
    f = m.d_ff_expert // spec.tp
    experts = b.memo.get("experts")
    if not isinstance(experts, _Experts):
        experts = b.memo["experts"] = _Experts(b)
    logits = b.linear(p + "router", "router", i, x, p + "router", after)
    combine_reads, combine_after = [], []
    shared_flops = 0
    if m.d_ff_shared:
        s, s_src = b.mlp(p + "shared.", i, x, after, op="shared")
        combine_reads.append(s)
        combine_after.append(s_src)
        shared_flops = N * d
        if m.shared_gate:
            g = b.linear(p + "shared_scale", "router", i, x, p + "shared_gate", after)
            combine_reads.append(g)
            combine_after.append(p + "shared_scale")
            shared_flops += N * d + 4 * N
    weights = b.act(p + "route.out", (b.d.B, b.d.T, k))
    per_score = 4 if m.sigmoid_router else FLOPS_PER_ELEMENT["softmax"]  # sigmoid: 4
    b.add(p + "route", "vector", "route", i, per_score * N * E, b.adt,
          (logits,), (weights,), (p + "router",))
    hidden = b.act(p + "up.out", (N * k, 2 * f))
    act = b.act(p + "act.out", (N * k, f))
    out = b.act(p + "down.out", (N * k, d))
    mdt = compute_dtype(b.adt, b.p.weights)
    w = {e: (b.weight(f"h{i}.moe.e{e}.gate.weight"), b.weight(f"h{i}.moe.e{e}.up.weight"),
             b.weight(f"h{i}.moe.e{e}.down.weight")) for e in range(E)}
    rows: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}  # (M, 0 up | 1 down) -> in, out

    def slices(M: int, down: int) -> tuple[Tensor, Tensor]:
        got = rows.get((M, down))
        if got is None:
            src, dst = (act, out) if down else (x, hidden)
            got = rows[(M, down)] = (
                Tensor(src.name, "activation", (M, src.shape[-1]), b.adt,
                       tensor_bytes((M, src.shape[-1]), b.adt)),
                Tensor(dst.name, "activation", (M, dst.shape[-1]), b.adt,
                       tensor_bytes((M, dst.shape[-1]), b.adt)))
        return got

    def write(step: int, dicts: Sequence[dict]) -> None:
        ids, counts = experts.at(step, i)
        up, down = dicts
        up_reads, down_reads, up_parts, down_parts = [x], [act], [], []
        for e, M in zip(ids.tolist(), counts.tolist(), strict=True):
            gate_w, up_w, down_w = w[e]
            xe, he = slices(M, 0)
            ae, ye = slices(M, 1)
            up_reads += (gate_w, up_w)
            down_reads.append(down_w)
            up_parts.append(("matmul", 4 * M * d * f, mdt, (xe, gate_w, up_w), (he,)))
            down_parts.append(("matmul", 2 * M * f * d, mdt, (ae, down_w), (ye,)))
        up.update(flops=4 * N * k * d * f, reads=tuple(up_reads), writes=(hidden,),
                  parts=tuple(up_parts))
        down.update(flops=2 * N * k * f * d, reads=tuple(down_reads), writes=(out,),
                    parts=tuple(down_parts))

    up_attrs: dict = {}
    down_attrs: dict = {}
    write(b.step, (up_attrs, down_attrs))
    b.add(p + "up", "matmul", "experts_up", i, dtype=mdt, after=(p + "route",), **up_attrs)
    b.vector(p + "act", "activation", i, m.activation, (hidden,), act.shape, (p + "up",))
    b.add(p + "down", "matmul", "experts_down", i, dtype=mdt, after=(p + "act",),
          **down_attrs)
    uniform = spec.routing.kind == "uniform"
    b.rules.append(StepRule((p + "up", p + "down"), ("moe",) if uniform else ("moe", i),
                            write))
    y = b.act(p + "combine.out", x.shape)
    b.add(p + "combine", "vector", "combine", i, 2 * N * k * d + shared_flops, b.adt,
          (out, weights, *combine_reads), (y,), (p + "down", p + "route", *combine_after))
    return b.all_reduce(p + "all_reduce", i, y, p + "combine")
