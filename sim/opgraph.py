"""The op-graph contract between `workloads` (which builds graphs) and the engine (which runs them).

A phase of inference (an encoder pass, a prefill, or one decode step) is a networkx DiGraph.
Nodes are op names (str, unique in the graph); edges are data dependencies. Node attributes:

    kind    "matmul" | "vector" | "collective"
    op      op type used for grouping in reports ("qkv", "attn_score", "softmax", "ffn_up", ...)
    layer   int, -1 for ops outside the layer stack (embedding, final norm, LM head)
    flops   int, FLOPs of the op (a multiply-accumulate is 2 FLOPs)
    dtype   compute precision: one of DTYPES (matmul at that peak; vector ops at the vector rate)
    reads   tuple[Tensor, ...], every operand, each counted once at the op boundary
    writes  tuple[Tensor, ...], every result
    group   int, devices taking part (collective ops only; payload = bytes of `reads`)
    parts   optional, a kernel that fuses several ops (workloads/fusion.py) or a grouped GEMM
            (the routed experts of a mixture-of-experts layer, one GEMM per chosen expert):
            the (kind, flops, dtype, reads, writes) of each, timed each at its own rate and
            GEMM shape; kind, flops and dtype are then the kernel's (matmul if any part is,
            the sum, the first matmul's dtype). MOPs count each part at its own boundary
            (`op_mops_bytes`); bytes moved are the node's own reads and writes

Graph attributes: phase ("encode" | "prefill" | "decode"), step (0 for the first phase, then
1, 2, ... per decode step), batch, tokens (positions processed in this phase), kv_len (positions
in the KV cache after this phase), tp (devices), model (str), weight_bytes (dict[str, int]:
every weight tensor the device stores -> its stored bytes, in the order placement should home
them; an op may read only part of one, e.g. the embedding gather reads only its rows, and a
routed expert may not be read at all in a phase, so size placement from this, not from
reads), and per_step (tuple[str, ...]: the ops
whose attributes change from one decode step to the next: attention cores as the KV cache
grows, routed experts as the router picks others; every other op's attributes stay the same
objects from step to step).

A weight tensor keeps its `name` in every step so the engine can tell it is already cached. A KV
cache tensor is named per layer; its reads carry the bytes of every position so far, its writes
the bytes of the positions this phase appends.

A producer may yield the same DiGraph object for several phases (decode steps), changing only
the attributes of the ops in `per_step` between them, by giving an op new `reads`/`writes`
tuples, `flops` (and `parts`); never its nodes or edges. Consumers cache per-op facts while
those tuples stay the same objects.
"""

from __future__ import annotations

import weakref
from typing import Literal, NamedTuple

import networkx as nx

#: Storage bits per element for each precision. int4 adds group-wise scales (see workloads).
DTYPE_BITS: dict[str, int] = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}
DTYPES: tuple[str, ...] = tuple(DTYPE_BITS)

TensorClass = Literal["weight", "activation", "kv_cache"]
TENSOR_CLASSES: tuple[str, ...] = ("weight", "activation", "kv_cache")
OP_KINDS: tuple[str, ...] = ("matmul", "vector", "collective")
#: How a runtime groups ops into kernels (workloads/fusion.py): one kernel per op, or fused.
FUSIONS: tuple[str, ...] = ("none", "fused")


class Tensor(NamedTuple):
    """One operand or result as an op sees it at its boundary (a NamedTuple: a decode step
    makes hundreds, and a frozen dataclass costs a setattr per field)."""

    name: str  # identity across ops and steps (e.g. "h3.attn.c_attn.weight", "h3.k_cache")
    cls: TensorClass
    shape: tuple[int, ...]
    dtype: str
    nbytes: int  # bytes touched at the op boundary, quantization scales included


def op_mops_bytes(a: dict) -> int:
    """The paper's MOPs of an op (node attributes `a`): every operand and result once at the
    op boundary; an op with `parts` counts each part at its own boundary, so MOPs stay a
    property of the model whatever a runtime fuses (bytes moved are a separate figure)."""
    parts = a.get("parts")
    tensors = [a["reads"], a["writes"]] if parts is None else \
        [x for p in parts for x in (p[3], p[4])]
    n = 0
    for ts in tensors:
        for t in ts:
            n += t.nbytes
    return n


class OpGraphError(ValueError):
    """An op graph that breaks the contract above (a bug in the builder, not user input)."""


def check_op_graph(G: nx.DiGraph) -> None:
    """Raise OpGraphError unless G honours the contract: a DAG of well-formed ops."""
    if not nx.is_directed_acyclic_graph(G):
        cycle = nx.find_cycle(G)
        raise OpGraphError(f"op graph has a cycle: {cycle}")
    for name, a in G.nodes(data=True):
        if a.get("kind") not in OP_KINDS:
            raise OpGraphError(f"op {name!r}: kind {a.get('kind')!r} is not one of {OP_KINDS}")
        if a.get("dtype") not in DTYPE_BITS:
            raise OpGraphError(f"op {name!r}: dtype {a.get('dtype')!r} is not one of {DTYPES}")
        if not isinstance(a.get("flops"), int) or a["flops"] < 0:
            raise OpGraphError(f"op {name!r}: flops must be a non-negative int")
        for t in (*a.get("reads", ()), *a.get("writes", ())):
            if t.cls not in TENSOR_CLASSES or t.nbytes < 0:
                raise OpGraphError(f"op {name!r}: bad tensor {t}")


_ORDERS: weakref.WeakKeyDictionary[nx.DiGraph, tuple[int, list[tuple[str, dict]]]] = (
    weakref.WeakKeyDictionary()
)


def topo_ops(G: nx.DiGraph) -> list[tuple[str, dict]]:
    """(name, attribute dict) of G's ops in topological order, kept while G lives and has as
    many nodes: decode steps reuse one template graph whose attributes change in place, never
    its nodes and edges (see the contract above). Keyed
    by the object itself, not its id: a new graph can reuse a freed graph's id."""
    n = len(G)  # a cheap guard: counting edges walks every node
    hit = _ORDERS.get(G)
    if hit is not None and hit[0] == n:
        return hit[1]
    nodes = G.nodes
    ops = [(name, nodes[name]) for name in nx.topological_sort(G)]
    _ORDERS[G] = (n, ops)
    return ops


def topo_order(G: nx.DiGraph) -> list[str]:
    """Op names of G in topological order (see topo_ops)."""
    return [name for name, _ in topo_ops(G)]
