"""Op graphs of a run, phase by phase (see workloads/spec.py for the run semantics).

Every graph honours sim/opgraph.py. Node names: "embed", "embed_scale" (Gemma), "pos_embed",
"type_embed", "embed_norm", per layer i "h{i}.norm1", "h{i}.attn.qkv", "h{i}.attn.rotary",
"h{i}.attn.score", "h{i}.attn.softmax", "h{i}.attn.value", "h{i}.attn.out",
"h{i}.attn.all_reduce", "h{i}.attn.post_norm" (Gemma 2), "h{i}.attn.residual", "h{i}.norm2",
"h{i}.mlp.gate", "h{i}.mlp.up", "h{i}.mlp.act", "h{i}.mlp.down", "h{i}.mlp.all_reduce",
"h{i}.mlp.post_norm", "h{i}.mlp.residual" (a parallel block: one "h{i}.residual"), then
"final_norm", "lm_head", "lm_head.softcap" (Gemma 2), "pooler", "pooler.tanh"; the MLA
attention of workloads/mla.py and the mixture-of-experts FFN ("h{i}.moe.*") of
workloads/moe.py have their own. Op types (`op`): embedding, pos_embedding, norm, qkv, rotary,
attn_score, softmax, attn_value, attn_out, all_reduce, residual, ffn_gate, ffn_up, activation,
ffn_down, lm_head, pooler; MLA: q_down, q_up, q_proj, kv_down, q_absorb, v_up; MoE: router,
route, experts_up, experts_down, shared_gate, shared_up, shared_down, combine.

Tensor parallel (tp = N): the graph of one device. Column-parallel qkv, ffn_up, ffn_gate;
row-parallel attn_out and ffn_down, each followed by an "all_reduce" collective of the
(B, T, d_model) activation (group N, 0 FLOPs). Heads and KV heads are split. The embedding
and position tables are replicated (each device gathers its own rows: no collective); the LM
head is split over the vocabulary, ceil(vocab / N) rows per device (a tied LM head reads that
shard of the replicated embedding table). Sampling from vocabulary-sharded logits exchanges
only B (value, index) pairs per device; that exchange is not modelled.

Graph attribute `weight_bytes` maps every weight held by the device to its stored bytes (the
embedding table's whole size, although the gather reads only some rows), in the order placement
homes them (`home_order`); `per_step` names the ops whose attributes change between decode
steps (block.StepRule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import networkx as nx

from sim.opgraph import Tensor, check_op_graph
from workloads.block import PhaseBuilder, StepRule
from workloads.fusion import FUSIONS, fuse
from workloads.mla import mla_attention
from workloads.model import WorkloadError
from workloads.moe import expert_home_order, moe_ffn
from workloads.spec import RunSpec


class ModelBuilder(PhaseBuilder):
    """PhaseBuilder with every family's attention and FFN: multi-head latent attention
    (workloads/mla.py) and mixtures of experts (workloads/moe.py) where the model has them."""

    def attention(self, i: int, x: Tensor, after: tuple[str, ...]) -> tuple[Tensor, str]:
        if self.m.mla:
            return mla_attention(self, i, x, after)
        return super().attention(i, x, after)

    def ffn(self, i: int, x: Tensor, after: tuple[str, ...]) -> tuple[Tensor, str]:
        if self.m.moe(i):
            return moe_ffn(self, i, x, after)
        return super().ffn(i, x, after)

    def build(self) -> nx.DiGraph:
        G = super().build()
        experts = expert_home_order(self.spec) if self.m.n_experts else []
        G.graph["weight_bytes"] = home_order(G, experts)
        return G


def home_order(G: nx.DiGraph, experts: list[str]) -> dict[str, int]:
    """G's weight_bytes in the order placement homes them: the weights G reads, in order of
    first use, but the routed experts; then the experts, in the order given (hottest first);
    then any other weight G does not read (an LM head a prefill-only run never runs)."""
    stored: dict[str, int] = G.graph["weight_bytes"]
    later = set(experts)
    order: dict[str, int] = {}
    for _, a in G.nodes(data=True):
        for t in a["reads"]:
            if t.cls == "weight" and t.name not in order and t.name not in later:
                order[t.name] = stored[t.name]
    for name in experts:
        order[name] = stored[name]
    for name, b in stored.items():
        order.setdefault(name, b)
    return order


def n_phases(spec: RunSpec) -> int:
    """Phase 0 (prefill or encode) plus gen_len - 1 decode steps."""
    return spec.n_phases


def build_phase(spec: RunSpec, step: int, check: bool = True) -> nx.DiGraph:
    """A fresh graph of phase `step` (0: prefill or encode; k >= 1: decode step k)."""
    return build_with_rules(spec, step, check)[0]


def build_with_rules(spec: RunSpec, step: int,
                     check: bool = True) -> tuple[nx.DiGraph, list[StepRule]]:
    """A fresh graph of phase `step` and the rules of its ops that change per decode step
    (block.StepRule; their names are the graph's `per_step`)."""
    if not 0 <= step < spec.n_phases:
        raise IndexError(f"step {step} not in 0 .. {spec.n_phases - 1}")
    b = ModelBuilder(spec, step)
    G = b.build()
    if check:
        check_op_graph(G)
    return G, b.rules


def final_phase(spec: RunSpec) -> nx.DiGraph:
    """The last phase: the largest KV cache, for sizing placement."""
    return build_phase(spec, spec.n_phases - 1)


def phases(spec: RunSpec, fusion: str = "none",
           steps: Sequence[int] | None = None) -> Iterator[nx.DiGraph]:
    """Every phase in order, as the kernels that run it (`fusion`, see workloads/fusion.py):
    phase 0, then decode steps 1 .. gen_len - 1 (or only the decode `steps` given, increasing:
    a sampled run, sim/sampling.py).

    The decode steps are ONE template DiGraph updated in place: only the ops its builder
    declared (the graph's `per_step`: attention cores, routed experts; or the kernels that
    fuse them) and the graph's step and kv_len change. A consumer must finish with a graph
    (and drop any reference to it or its attribute dicts) before asking for the next one;
    copy it (`G.copy()`) to keep it.
    """
    if fusion not in FUSIONS:
        raise WorkloadError(f"fusion = {fusion!r}: expected one of {', '.join(FUSIONS)}")
    G = build_phase(spec, 0)
    yield G if fusion == "none" else fuse(G)[0]
    if spec.n_phases == 1:
        return
    todo = list(range(1, spec.n_phases)) if steps is None else list(steps)
    if todo != sorted(set(todo)) or todo and not 1 <= todo[0] <= todo[-1] < spec.n_phases:
        raise WorkloadError(f"decode steps {todo[:4]}...: expected increasing steps from 1 to "
                            f"{spec.n_phases - 1}")
    if not todo:
        return
    G, update = decode_template(spec)
    K, refresh = (G, None) if fusion == "none" else fuse(G)
    for i, step in enumerate(todo):
        if i or step != 1:  # the template is built at step 1
            update(step)
            if refresh is not None:
                refresh()
        yield K


def decode_template(spec: RunSpec) -> tuple[nx.DiGraph, Callable[[int], None]]:
    """The graph of decode step 1 and a function that moves it to another decode step in
    place, by the rules its builder declared (tests check it matches fresh builds)."""
    G, rules = build_with_rules(spec, 1)
    nodes, graph = G.nodes, G.graph
    slots = [(r.write, [nodes[n] for n in r.nodes]) for r in rules]

    def update(step: int) -> None:
        for write, dicts in slots:
            write(step, dicts)
        graph["step"], graph["kv_len"] = step, spec.kv_len(step)

    return G, update
