"""The op graph of one serving iteration: the sequences a scheduler runs together, each with
its own prompt chunk or decode token and its own KV length (memwall/serving decides them).

The tokens of every sequence are packed into one stream of N rows, (1, N, d_model), as
continuous-batching runtimes run them (Orca's selective batching): the GEMMs, norms and
elementwise ops run once over all N rows. Attention runs per sequence over its own KV cache:
one kernel per layer (PagedAttention, FlashAttention's variable-length kernels) whose `parts`
(sim/opgraph.py) are the sequences grouped by shape, a group of c sequences feeding T tokens
each with kv positions cached after the iteration being one batched GEMM of c x heads,
timed by its own shape. The layer's KV cache is one tensor per layer, as in a phase graph
("h{i}.k_cache": the running sequences' blocks, read at the sum of their lengths); the LM head
runs on the positions sampled, each decode token and the last position of a prompt whose
final chunk this is.

A batch of one shape (one sequence; or c sequences with the same lengths, as static batching
runs them) has no parts: its graph is the phase graph of workloads/graph.py for a batch of c,
tensor for tensor, so a request alone is timed exactly as the main job times it.

`Batches` keeps the graphs of recent batch sizes and, on a hit, rewrites only the attention
ops (the graph's `per_step`), so that the engines' per-op facts of every other op carry over,
as they do across the decode steps of a run.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from sim.opgraph import Tensor, check_op_graph
from workloads.attention import AttentionCore, CoreShape, Dims, StepRule
from workloads.fusion import FUSIONS, fuse
from workloads.graph import ModelBuilder, home_order
from workloads.model import ModelConfig, Precision, WorkloadError, tensor_bytes
from workloads.spec import RunSpec

GRAPHS_KEPT = 64  # batch graphs Batches keeps, most recently used


@dataclass(frozen=True, slots=True)
class Seq:
    """One sequence's share of an iteration."""

    tokens: int  # positions fed: a prompt chunk, or 1 for a decode step
    kv_len: int  # positions in its KV cache after the iteration
    sample: bool  # its last position is sampled (a decode step, or a prompt's final chunk)
    prefill: bool  # a prompt chunk (else a decode step)


Groups = tuple[tuple[int, int, int], ...]  # (tokens, kv_len, sequences), in order of first use


def groups_of(seqs: Sequence[Seq]) -> Groups:
    """The sequences grouped by (tokens, kv_len), in order of first appearance."""
    count: dict[tuple[int, int], int] = {}
    for s in seqs:
        k = (s.tokens, s.kv_len)
        count[k] = count.get(k, 0) + 1
    return tuple((t, kv, c) for (t, kv), c in count.items())


def serving_spec(model: ModelConfig, precision: Precision, tp: int = 1) -> RunSpec:
    """The RunSpec a batch graph is built from: the model, precision and split (the lengths are
    the batch's own, see BatchBuilder). Refuses what batch graphs do not model: encoders
    (nothing to serve token by token) and mixtures of experts (a router over the packed
    tokens of many sequences is not built yet)."""
    if model.arch != "decoder":
        raise WorkloadError(f"{model.name!r} is an encoder; serving needs a decoder")
    if model.n_experts:
        raise WorkloadError(f"{model.name!r} is a mixture of experts; serving runs dense "
                            "models only (expert routing over a packed batch is not modelled)")
    return RunSpec(model, prompt_len=1, gen_len=1, batch=1, precision=precision, tp=tp)


class BatchBuilder(ModelBuilder):
    """The op graph of one iteration over `seqs` (see the module docstring)."""

    def __init__(self, spec: RunSpec, seqs: Sequence[Seq], step: int) -> None:
        if not seqs:
            raise WorkloadError("an iteration needs at least one sequence")
        self.groups = groups_of(seqs)
        self.group_cores: dict[tuple[CoreShape, int, int], AttentionCore] = {}
        self.grouped: dict[tuple[CoreShape, Groups], tuple] = {}  # _grouped, this iteration's
        d = Dims.of(spec, 0)
        if len(self.groups) == 1:  # one shape: the phase graph of a batch of c
            T, _, c = self.groups[0]
            d = dataclasses.replace(d, B=c, T=T)
        else:
            d = dataclasses.replace(d, B=1, T=sum(s.tokens for s in seqs))
        super().__init__(spec, 0, d)
        self.sampled = sum(s.sample for s in seqs)
        self.seqs = tuple(seqs)
        self.kv_len = max(s.kv_len for s in seqs)
        self.G.graph.update(_attributes(seqs, step))
        self.slots: list[tuple[int, CoreShape, tuple[Tensor, ...], Tensor, list[str]]] = []

    def new_positions(self, window: int) -> int:
        if len(self.groups) == 1 or not window:
            return super().new_positions(window)
        return sum(c * min(T, window) for T, _, c in self.groups)

    def cores_by_shape(self, shape: CoreShape, c: int, T: int) -> AttentionCore:
        """The attention core of `shape` for a group of c sequences feeding T tokens each."""
        key = (shape, c, T)
        got = self.group_cores.get(key)
        if got is None:
            got = self.group_cores[key] = AttentionCore(
                self.spec, dataclasses.replace(self.d, B=c, T=T), shape)
        return got

    def attention_core(self, i: int, shape: CoreShape, q: tuple[Tensor, ...],
                       after: tuple[str, ...], value_after: tuple[str, ...]) -> Tensor:
        d, p = self.d, f"h{i}.attn."
        out = self.act(p + "value.out", (d.B, d.T, d.H * shape.v_dim))
        dicts: tuple[dict, dict, dict] = ({}, {}, {})
        names = [p + "score", p + "softmax", p + "value"]
        self.slots.append((i, shape, q, out, names))
        _attention(self, i, shape, q, out, self.groups, dicts)
        score, softmax, value = dicts
        self.add(names[0], "matmul", "attn_score", i, dtype=d.sdt, after=after, **score)
        self.add(names[1], "vector", "softmax", i, dtype=self.adt, after=(names[0],),
                 **softmax)
        self.add(names[2], "matmul", "attn_value", i, dtype=d.sdt,
                 after=(names[1], *value_after), **value)
        self.rules.append(StepRule(tuple(names), ("batch attention", shape), _no_step))
        return out

    def build(self) -> nx.DiGraph:
        G = super().build()
        G.graph["weight_bytes"] = home_order(G, [])
        return G


def _attributes(seqs: Sequence[Seq], step: int) -> dict[str, Any]:
    """The graph attributes that change with the iteration (sim/opgraph.py)."""
    prefill = sum(s.prefill for s in seqs)
    phase = "prefill" if prefill == len(seqs) else "decode" if not prefill else "mixed"
    return {"phase": phase, "step": step, "kv_len": max(s.kv_len for s in seqs),
            "batch": len(seqs)}


def _no_step(step: int, dicts: Sequence[dict[str, Any]]) -> None:
    raise WorkloadError("a batch graph changes by Batches.graph, not by decode step")


def _attention(b: BatchBuilder, i: int, shape: CoreShape, q: tuple[Tensor, ...], out: Tensor,
               groups: Groups, dicts: Sequence[dict]) -> None:
    """Write the score, softmax and value ops of layer i over `groups` into `dicts`."""
    d = b.d
    names = AttentionCore(b.spec, d, shape).names(i)
    if len(groups) == 1:  # the phase graph's own ops, for a batch of c
        T, kv, c = groups[0]
        ops = b.cores_by_shape(shape, c, T).ops(kv, names, q, out)
        for mine, theirs in zip(dicts, ops, strict=True):
            mine.pop("parts", None)
            mine.update(theirs)
        return
    parts, flops, kv_pos, kv_bytes, s_elems, s_bytes = _grouped(b, shape, q, out, groups)
    kname, vname, sname, pname = names
    k_shape = (1, shape.kv_heads, kv_pos, shape.k_dim)
    k = Tensor(kname, "kv_cache", k_shape, d.kdt, kv_bytes)
    s_shape = (1, d.H, 1, s_elems // d.H)  # every group's (T, attended) scores, flattened
    scores = Tensor(sname, "activation", s_shape, b.adt, s_bytes)
    probs = Tensor(pname, "activation", s_shape, b.adt, s_bytes)
    v = k if vname == kname else Tensor(vname, "kv_cache", k_shape, d.kdt, kv_bytes)
    score, softmax, value = dicts
    score.update(flops=flops[0], reads=(q[0], k, *q[1:]), writes=(scores,), parts=parts[0])
    softmax.update(flops=flops[1], reads=(scores,), writes=(probs,), parts=parts[1])
    value.update(flops=flops[2], reads=(probs, v), writes=(out,), parts=parts[2])


def _grouped(b: BatchBuilder, shape: CoreShape, q: tuple[Tensor, ...], out: Tensor,
             groups: Groups) -> tuple:
    """The parts of the score, softmax and value kernels over `groups` (one batched GEMM or
    softmax per group, its tensors named after the first layer: parts are timed and counted,
    never routed), their FLOPs, and the totals the kernels' own tensors carry: KV positions
    and bytes, score elements and bytes. Worked out once per iteration and attention layout,
    and shared by the layers (the same tuples, so the engines time them once)."""
    key = (shape, groups)
    got = b.grouped.get(key)
    if got is not None:
        return got
    d = b.d
    names = AttentionCore(b.spec, d, shape).names(0)
    parts: list[list[tuple]] = [[], [], []]
    flops = [0, 0, 0]
    kv_pos = kv_bytes = s_elems = s_bytes = 0
    kinds = (("matmul", d.sdt), ("vector", b.adt), ("matmul", d.sdt))
    for T, kv, c in groups:
        gq = tuple(_regroup(t, c, T) for t in q)
        ops = b.cores_by_shape(shape, c, T).ops(kv, names, gq, _regroup(out, c, T))
        for j, a in enumerate(ops):
            parts[j].append((*kinds[j][:1], a["flops"], kinds[j][1], a["reads"], a["writes"]))
            flops[j] += a["flops"]
        k, sc = ops[0]["reads"][1], ops[0]["writes"][0]
        kv_pos += c * k.shape[2]
        kv_bytes += k.nbytes
        s_elems += math.prod(sc.shape)
        s_bytes += sc.nbytes
    if len(b.grouped) > 8:
        b.grouped.clear()
    got = b.grouped[key] = (tuple(tuple(x) for x in parts), flops, kv_pos, kv_bytes, s_elems,
                            s_bytes)
    return got


def _regroup(t: Tensor, c: int, T: int) -> Tensor:
    """Packed tensor `t` (1, ..., N, last) as a group's (c, ..., T, last); (1, N, last) as
    (c, T, last)."""
    shape = (c, *t.shape[1:-2], T, t.shape[-1])
    return Tensor(t.name, t.cls, shape, t.dtype, tensor_bytes(shape, t.dtype))


class Batches:
    """The op graphs of a model's serving iterations, as the kernels a runtime runs (`fusion`,
    workloads/fusion.py). `graph(seqs, step)` returns the graph of one iteration; the graphs
    of the last GRAPHS_KEPT batch sizes (tokens, sampled positions, shape count) are kept and
    their attention ops rewritten in place, so a consumer must finish with a graph before
    asking for the next (as with graph.phases)."""

    def __init__(self, spec: RunSpec, fusion: str = "none", check: bool = False) -> None:
        if fusion not in FUSIONS:
            raise WorkloadError(f"fusion = {fusion!r}: expected one of {', '.join(FUSIONS)}")
        self.spec, self.fusion, self.check = spec, fusion, check
        self._kept: OrderedDict[tuple, tuple[BatchBuilder, nx.DiGraph, nx.DiGraph,
                                             Callable[[], None] | None]] = OrderedDict()

    def graph(self, seqs: Sequence[Seq], step: int) -> nx.DiGraph:
        groups = groups_of(seqs)
        key = _key(self.spec.model, seqs, groups)
        got = self._kept.get(key)
        if got is None:
            b = BatchBuilder(self.spec, seqs, step)
            G = b.build()
            if self.check:
                check_op_graph(G)
            K, refresh = (G, None) if self.fusion == "none" else fuse(G)
            got = self._kept[key] = (b, G, K, refresh)
            if len(self._kept) > GRAPHS_KEPT:
                self._kept.popitem(last=False)
            return K
        self._kept.move_to_end(key)
        b, G, K, refresh = got
        if groups != b.groups:
            b.groups = groups
            nodes = G.nodes
            for i, shape, q, out, names in b.slots:
                _attention(b, i, shape, q, out, groups, [nodes[n] for n in names])
            if refresh is not None:
                refresh()
        attrs = _attributes(seqs, step)
        G.graph.update(attrs)
        K.graph.update(attrs)
        return K


def _key(m: ModelConfig, seqs: Sequence[Seq], groups: Groups) -> tuple:
    """What a batch graph's ops other than attention depend on: token rows, sampled positions,
    and for one shape its (tokens, sequences); with a sliding window the positions appended."""
    key: tuple = (sum(s.tokens for s in seqs), sum(s.sample for s in seqs),
                  groups[0][::2] if len(groups) == 1 else None)
    if m.sliding_window:
        key += (sum(c * min(T, m.sliding_window) for T, _, c in groups),)
    return key
