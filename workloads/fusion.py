"""Kernel fusion: which ops of a phase's op graph run as one kernel.

    none   every op is a kernel of its own, as eager PyTorch runs a model.
    fused  what inference stacks (FasterTransformer, TensorRT-LLM, vLLM, torch.compile) fuse:
           - attention: a layer's score, softmax and value ops are one kernel (fused masked
             attention, FlashAttention), so the scores never leave the chip;
           - epilogues: an elementwise op (residual add, activation, rotary embedding,
             position or type embedding add or scale, the pooler's tanh, the logits' soft-cap,
             a mixture of experts' weighted combine) runs at the end of the kernel
             that produced its last input (the latest of its producers in topological order)
             if that producer is a matmul, the embedding gather, or itself such an epilogue;
             another matmul producer that reads the same activation joins that kernel
             (SwiGLU's gate and up projections become one GEMM). A residual add after an
             all-reduce stays a kernel of its own.
           Norms (row reductions), collectives, and matmuls that consume another matmul's
           result stay kernels of their own.

A kernel reads the tensors its ops read that none of them writes, once each, and writes what
its ops write that an op outside it reads, that nothing reads (a phase's outputs), or that
persists (the KV cache); the rest stays on chip. Its FLOPs are its ops' sum, and its node
carries `parts`, the (kind, flops, dtype, reads, writes) of each op, so that each is timed at
its own rate and a matmul by its own GEMM shape.
A kernel of several ops is named after them: "h3.attn.out+residual", "embed+pos_embed";
its op type joins theirs the same way ("attn_out+residual").
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from sim.opgraph import FUSIONS, OpGraphError

__all__ = ["FUSIONS", "fuse", "fusion_groups", "kernel_name"]
EPILOGUE_OPS = frozenset({"residual", "activation", "rotary", "pos_embedding", "combine"})
ATTENTION_OPS = frozenset({"attn_score", "softmax", "attn_value"})


def fusion_groups(G: nx.DiGraph) -> list[list[str]]:
    """The kernels of op graph G under fusion "fused": lists of op names in topological order,
    the lists ordered by their first op."""
    order = list(nx.topological_sort(G))
    pos = {name: i for i, name in enumerate(order)}
    nodes = G.nodes
    parent = {name: name for name in order}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb, key=pos.__getitem__)] = min(ra, rb, key=pos.__getitem__)

    def activation_reads(name: str) -> set[str]:
        return {t.name for t in nodes[name]["reads"] if t.cls != "weight"}

    cores: dict[int, str] = {}  # layer -> first attention-core op seen
    epilogue: set[str] = set()
    for name in order:
        a = nodes[name]
        if a["op"] in ATTENTION_OPS:
            first = cores.setdefault(a["layer"], name)
            union(first, name)
        elif a["op"] in EPILOGUE_OPS and a["kind"] == "vector":
            producers = list(G.predecessors(name))
            if not producers:
                continue
            host = max(producers, key=pos.__getitem__)  # produced its last input
            if not (nodes[host]["kind"] == "matmul" or nodes[host]["op"] == "embedding"
                    or host in epilogue):
                continue
            union(host, name)
            epilogue.add(name)
            if nodes[host]["kind"] == "matmul":
                x = activation_reads(host)
                for p in producers:
                    if p != host and nodes[p]["kind"] == "matmul" and activation_reads(p) == x:
                        union(host, p)
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def kernel_name(members: list[str]) -> str:
    """"h3.attn.out" + "h3.attn.residual" -> "h3.attn.out+residual" (shared dotted prefix
    written once)."""
    if len(members) == 1:
        return members[0]
    split = [m.split(".") for m in members]
    k = 0
    while all(len(s) > k + 1 and s[k] == split[0][k] for s in split):
        k += 1
    return members[0] + "".join("+" + ".".join(s[k:]) for s in split[1:])


class _Kernel:
    """One kernel of several ops: merges their attributes, again when they change."""

    __slots__ = ("name", "names", "members", "internal", "lengths", "read_at", "write_at",
                 "attrs")

    def __init__(self, G: nx.DiGraph, members: list[str], internal: frozenset[str]) -> None:
        self.name = kernel_name(members)
        self.names = members
        self.members = [G.nodes[m] for m in members]  # the op graph's own attribute dicts
        self.internal = internal
        self.lengths: tuple[int, ...] = ()
        self.read_at: list[tuple[int, int]] = []
        self.write_at: list[tuple[int, int]] = []
        self.attrs: dict = {}  # the kernel node's attribute dict, once it is in the graph
        anchor = next((a for a in self.members if a["kind"] == "matmul"), self.members[0])
        self.attrs.update(kind=anchor["kind"], op="+".join(a["op"] for a in self.members),
                          layer=anchor["layer"], dtype=anchor["dtype"])
        self.refresh()

    def _locate(self) -> None:
        """Where the kernel's reads and writes sit among its ops' (op index, position): a read
        of a tensor no op of it writes, first occurrence only; a write not `internal` (written
        and read only inside the kernel). Positions, not tensors: a decode step replaces an
        op's tensors by ones of the same name and role (the routed experts' reads change in
        number too, and then the positions are found again)."""
        written = {t.name for a in self.members for t in a["writes"]}
        seen_reads: set[str] = set()
        self.read_at = []
        for i, a in enumerate(self.members):
            for j, t in enumerate(a["reads"]):
                if t.name not in written and t.name not in seen_reads:
                    seen_reads.add(t.name)
                    self.read_at.append((i, j))
        self.write_at = [(i, j) for i, a in enumerate(self.members)
                         for j, t in enumerate(a["writes"]) if t.name not in self.internal]

    def refresh(self) -> None:
        """Merge the ops' current attributes into `attrs` (after an op graph changed an op by
        giving it new tuples and FLOPs). An op that is itself a grouped GEMM adds its parts."""
        members = self.members
        lengths = tuple(n for a in members for n in (len(a["reads"]), len(a["writes"])))
        if lengths != self.lengths:
            self.lengths = lengths
            self._locate()
        flops = 0
        parts = []
        for a in members:
            flops += a["flops"]
            own = a.get("parts")
            if own is None:
                parts.append((a["kind"], a["flops"], a["dtype"], a["reads"], a["writes"]))
            else:
                parts.extend(own)
        self.attrs.update(
            flops=flops,
            reads=tuple([members[i]["reads"][j] for i, j in self.read_at]),
            writes=tuple([members[i]["writes"][j] for i, j in self.write_at]),
            parts=tuple(parts))


def fuse(G: nx.DiGraph) -> tuple[nx.DiGraph, Callable[[], None]]:
    """The kernel graph of op graph G under fusion "fused", and a function that brings it up
    to date after the ops G declares in `per_step` change in place (a decode template moving
    to its next step; no other op changes then). The kernel graph's attributes are G's, its
    `per_step` naming the kernels that change."""
    groups = fusion_groups(G)
    readers: dict[str, set[str]] = {}
    for name, a in G.nodes(data=True):
        for t in a["reads"]:
            readers.setdefault(t.name, set()).add(name)
    per_step = frozenset(G.graph.get("per_step", ()))
    K = nx.DiGraph()
    home: dict[str, str] = {}
    kernels: list[_Kernel] = []
    for members in groups:
        inside = set(members)
        if len(members) == 1:
            K.add_node(members[0], **G.nodes[members[0]])
            home[members[0]] = members[0]
            continue
        internal = frozenset(
            t.name for m in members for t in G.nodes[m]["writes"]
            if t.cls != "kv_cache" and readers.get(t.name) and readers[t.name] <= inside)
        k = _Kernel(G, members, internal)
        kernels.append(k)
        K.add_node(k.name, **k.attrs)
        k.attrs = K.nodes[k.name]  # refreshed in place from now on
        for m in members:
            home[m] = k.name
    K.add_edges_from((home[u], home[v]) for u, v in G.edges if home[u] != home[v])
    if not nx.is_directed_acyclic_graph(K):
        raise OpGraphError(f"fusing {G.graph.get('model')} made a cycle: {nx.find_cycle(K)}")
    changing = [k for k in kernels if per_step.intersection(k.names)]
    K.graph.update(G.graph)
    K.graph["per_step"] = tuple(dict.fromkeys(home[n] for n in G.graph.get("per_step", ())))
    graph, source = K.graph, G.graph
    alone = [(K.nodes[n], G.nodes[n]) for n in G if n in per_step and home[n] == n]

    def refresh() -> None:
        for k in changing:
            k.refresh()
        for mine, theirs in alone:  # an op that is a kernel of its own: a copy of its dict
            mine.update(theirs)
        graph["step"], graph["kv_len"] = source["step"], source["kv_len"]

    return K, refresh
