"""Op graphs of a run, phase by phase (see workloads/spec.py for the run semantics).

Every graph honours sim/opgraph.py. Node names: "embed", "pos_embed", "type_embed",
"embed_norm", per layer i "h{i}.norm1", "h{i}.attn.qkv", "h{i}.attn.rotary",
"h{i}.attn.score", "h{i}.attn.softmax", "h{i}.attn.value", "h{i}.attn.out",
"h{i}.attn.all_reduce", "h{i}.attn.residual", "h{i}.norm2", "h{i}.mlp.gate", "h{i}.mlp.up",
"h{i}.mlp.act", "h{i}.mlp.down", "h{i}.mlp.all_reduce", "h{i}.mlp.residual" (GPT-J:
one "h{i}.residual"), then "final_norm", "lm_head", "pooler", "pooler.tanh". Op types
(`op`): embedding, pos_embedding, norm, qkv, rotary, attn_score, softmax, attn_value,
attn_out, all_reduce, residual, ffn_gate, ffn_up, activation, ffn_down, lm_head, pooler.

Tensor parallel (tp = N): the graph of one device. Column-parallel qkv, ffn_up, ffn_gate;
row-parallel attn_out and ffn_down, each followed by an "all_reduce" collective of the
(B, T, d_model) activation (group N, 0 FLOPs). Heads and KV heads are split. The embedding
and position tables are replicated (each device gathers its own rows: no collective); the LM
head is split over the vocabulary, ceil(vocab / N) rows per device (a tied LM head reads that
shard of the replicated embedding table). Sampling from vocabulary-sharded logits exchanges
only B (value, index) pairs per device; that exchange is not modelled.

Graph attribute `weight_bytes` maps every weight held by the device to its stored bytes (the
embedding table's whole size, although the gather reads only some rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import networkx as nx

from sim.opgraph import Tensor, check_op_graph
from workloads.block import Dims, PhaseBuilder, attention_core
from workloads.fusion import FUSIONS, fuse
from workloads.model import WorkloadError
from workloads.spec import RunSpec


def n_phases(spec: RunSpec) -> int:
    """Phase 0 (prefill or encode) plus gen_len - 1 decode steps."""
    return spec.n_phases


def build_phase(spec: RunSpec, step: int, check: bool = True) -> nx.DiGraph:
    """A fresh graph of phase `step` (0: prefill or encode; k >= 1: decode step k)."""
    if not 0 <= step < spec.n_phases:
        raise IndexError(f"step {step} not in 0 .. {spec.n_phases - 1}")
    G = PhaseBuilder(spec, step).build()
    if check:
        check_op_graph(G)
    return G


def final_phase(spec: RunSpec) -> nx.DiGraph:
    """The last phase: the largest KV cache, for sizing placement."""
    return build_phase(spec, spec.n_phases - 1)


def phases(spec: RunSpec, fusion: str = "none") -> Iterator[nx.DiGraph]:
    """Every phase in order, as the kernels that run it (`fusion`, see workloads/fusion.py):
    phase 0, then decode steps 1 .. gen_len - 1.

    The decode steps are ONE template DiGraph updated in place: only the attributes that
    depend on the KV length (flops, reads and writes of attn_score, softmax, attn_value, or
    of the kernel that fuses them, and the graph's step and kv_len) change. A consumer must
    finish with a graph (and drop any reference to it or its attribute dicts) before asking
    for the next one; copy it (`G.copy()`) to keep it.
    """
    if fusion not in FUSIONS:
        raise WorkloadError(f"fusion = {fusion!r}: expected one of {', '.join(FUSIONS)}")
    G = build_phase(spec, 0)
    yield G if fusion == "none" else fuse(G)[0]
    if spec.n_phases == 1:
        return
    G = build_phase(spec, 1)
    update = decode_updater(spec, G)
    if fusion == "none":
        yield G
        for step in range(2, spec.n_phases):
            update(step)
            yield G
        return
    K, refresh = fuse(G)
    yield K
    for step in range(2, spec.n_phases):
        update(step)
        refresh()
        yield K


def decode_updater(spec: RunSpec, G: nx.DiGraph) -> Callable[[int], None]:
    """A function that moves decode template G (built for any step >= 1) to another step.

    It writes what `block.attention_core` would (tests check they agree), computing shapes
    and bytes once per step rather than once per layer.
    """
    d = Dims.of(spec, 1)
    nodes = G.nodes
    slots = []  # per layer: tensor names, the static query, the three attribute dicts
    for i in range(spec.model.n_layers):
        p = f"h{i}.attn."
        score, softmax, value = nodes[p + "score"], nodes[p + "softmax"], nodes[p + "value"]
        q, k = score["reads"]
        v = value["reads"][1]
        slots.append((k.name, v.name, score["writes"][0].name, softmax["writes"][0].name,
                      q, score, softmax, value))
    graph = G.graph
    kv_cls = "kv_cache" if d.cached else "activation"

    def update(step: int) -> None:
        kv_len = spec.kv_len(step)
        (fs, (_, k0), (s0,)), (fm, _, _), (fv, _, _) = attention_core(d, 0, slots[0][4], kv_len)
        kv_shape, kv_bytes, kdt = k0.shape, k0.nbytes, k0.dtype
        s_shape, s_bytes, adt = s0.shape, s0.nbytes, s0.dtype
        for kname, vname, sname, pname, q, score, softmax, value in slots:
            scores = Tensor(sname, "activation", s_shape, adt, s_bytes)
            probs = Tensor(pname, "activation", s_shape, adt, s_bytes)
            score["flops"], score["reads"], score["writes"] = (
                fs, (q, Tensor(kname, kv_cls, kv_shape, kdt, kv_bytes)), (scores,))
            softmax["flops"], softmax["reads"], softmax["writes"] = fm, (scores,), (probs,)
            value["flops"], value["reads"] = fv, (probs, Tensor(vname, kv_cls, kv_shape, kdt,
                                                                 kv_bytes))
        graph["step"], graph["kv_len"] = step, kv_len

    return update
