"""The ops of one phase: embeddings, each Transformer block, final norm, LM head or pooler.

`PhaseBuilder` writes nodes and edges into a networkx DiGraph following sim/opgraph.py. Shapes
are those of one device of `tp` (Megatron split, see model.parameter_shapes). Activations are
(B, T, features); queries (B, heads, T, d_head); keys and values (B, kv_heads, positions,
d_head); scores and probabilities (B, heads, T, positions).

FLOPs. A multiply-accumulate is 2 FLOPs; a bias adds 1 per output element. Vector ops count
FLOPS_PER_ELEMENT of the output: layernorm 7 (mean 1, centre 1, square and sum 2, scale 1,
gain 1, shift 1; the per-row rsqrt is not counted), rmsnorm 4 (square and sum 2, scale 1,
gain 1), softmax 5 (max, subtract, exp, sum, divide; the 1/sqrt(d_head) scale is folded into
the subtract; Gemma 2's soft-capping, c tanh(s / c), adds 3), gelu 8 (tanh approximation,
tanh counted as 1), relu 1, swiglu 5 (silu 4: negate, exp, add, divide; times the up
projection 1), geglu 9 (gelu 8, times the up projection 1), tanh 1 (BERT pooler), rotary 3 per
rotated element of q and k (x cos + rotate_half(x) sin), add 1 (residual, position and type
embeddings), 1 for Gemma's embedding scale and 3 for its logits' soft-cap. Attention is dense:
a prefill of T tokens computes all T x kv_len scores (a causal kernel that skips the masked
half would do about half); a sliding window caps the positions each query attends to (see
workloads/attention.py). The embedding gather does no arithmetic; it reads only the gathered
rows of its table. Token ids (int) are not counted.
"""

from __future__ import annotations

import math

import networkx as nx

from sim.opgraph import Tensor
from workloads.attention import SOFTMAX_FLOPS, AttentionCore, CoreShape, Dims, StepRule
from workloads.model import GATED, compute_dtype, parameter_shapes, tensor_bytes, weight_bytes
from workloads.spec import RunSpec

__all__ = ["FLOPS_PER_ELEMENT", "AttentionCore", "CoreShape", "Dims", "PhaseBuilder",
           "StepRule"]

FLOPS_PER_ELEMENT: dict[str, int] = {
    "layernorm": 7, "rmsnorm": 4, "softmax": SOFTMAX_FLOPS, "gelu": 8, "relu": 1, "swiglu": 5,
    "geglu": 9, "tanh": 1, "rotary": 3, "add": 1,
}


class PhaseBuilder:
    """Adds the ops of one phase (`step` of `spec`) to a fresh DiGraph, `self.G`.

    A family whose attention or FFN differs adds its own builder module (workloads/mla.py,
    workloads/moe.py) with a function that adds its ops through `add`, `linear`, `vector` and
    `norm` and registers the rules of ops that change per decode step in `self.rules`;
    graph.ModelBuilder calls it in place of `attention` or `ffn`.
    """

    def __init__(self, spec: RunSpec, step: int, dims: Dims | None = None) -> None:
        """`dims`: the phase's sizes, if not those of `step` of `spec` (a serving iteration
        packs the tokens of many sequences: workloads/batch.py)."""
        m, p = spec.model, spec.precision
        self.spec, self.m, self.step, self.p = spec, m, step, p
        self.d = Dims.of(spec, step) if dims is None else dims
        self.kv_len = spec.kv_len(step)
        self.attend = self.kv_len if m.arch == "decoder" else self.d.T
        self.rows = self.d.B * self.d.T  # token rows in this phase
        # positions the LM head samples from: each sequence's last (none in a prefill-only run)
        self.sampled = self.d.B if m.arch == "decoder" and (step > 0 or spec.gen_len > 0) else 0
        self.adt = p.activations
        self.mdt = compute_dtype(p.activations, p.weights)  # weight matmuls
        self.shapes = parameter_shapes(m, spec.tp)
        self.rules: list[StepRule] = []  # ops that change per decode step
        self.cores: dict[CoreShape, AttentionCore] = {}
        phase = "encode" if m.arch == "encoder" else ("prefill" if step == 0 else "decode")
        self.G = nx.DiGraph(
            phase=phase, step=step, batch=self.d.B, tokens=self.d.T, kv_len=self.kv_len,
            tp=spec.tp, model=m.name,
            weight_bytes={n: weight_bytes(m, s, p.of_weight(n, s))
                          for n, s in self.shapes.items()})
        self._weights: dict[tuple[str, int | None], Tensor] = {}
        self.memo: dict[str, object] = {}  # per-phase state of family modules (moe.py)

    # -- tensors and nodes ------------------------------------------------------------
    def weight(self, name: str, rows: int | None = None) -> Tensor:
        """Weight `name`, or `rows` of its rows (a gather or a vocab shard)."""
        got = self._weights.get((name, rows))
        if got is None:
            shape = self.shapes[name]
            if rows is not None:
                shape = (rows, *shape[1:])
            dtype = self.p.of_weight(name, self.shapes[name])
            got = self._weights[(name, rows)] = Tensor(name, "weight", shape, dtype,
                                                       weight_bytes(self.m, shape, dtype))
        return got

    def params(self, prefix: str) -> tuple[Tensor, ...]:
        """The weight and, if the model has one, the bias of module `prefix`."""
        return tuple(self.weight(prefix + s) for s in (".weight", ".bias")
                     if prefix + s in self.shapes)

    def act(self, name: str, shape: tuple[int, ...], dtype: str | None = None) -> Tensor:
        dtype = dtype or self.adt
        return Tensor(name, "activation", shape, dtype, tensor_bytes(shape, dtype))

    def add(self, name: str, kind: str, op: str, layer: int, flops: int, dtype: str,
            reads: tuple[Tensor, ...], writes: tuple[Tensor, ...], after: tuple[str, ...],
            **extra: object) -> Tensor:
        self.G.add_node(name, kind=kind, op=op, layer=layer, flops=flops, dtype=dtype,
                        reads=reads, writes=writes, **extra)
        self.G.add_edges_from((a, name) for a in after)
        return writes[0]

    def vector(self, name: str, op: str, layer: int, per_element: str | int,
               reads: tuple[Tensor, ...], shape: tuple[int, ...], after: tuple[str, ...]) -> Tensor:
        """An elementwise op writing `shape`; `per_element`: a FLOPS_PER_ELEMENT key or a
        count."""
        out = self.act(name + ".out", shape)
        per = FLOPS_PER_ELEMENT[per_element] if isinstance(per_element, str) else per_element
        return self.add(name, "vector", op, layer, per * math.prod(shape), self.adt, reads,
                        (out,), after)

    def linear(self, name: str, op: str, layer: int, x: Tensor, module: str,
               after: tuple[str, ...], rows: int | None = None,
               out_shape: tuple[int, ...] | None = None) -> Tensor:
        """x @ W.T (+ b) for the weight(s) of `module`; rows = token rows (default all);
        `out_shape`: the result's shape if not (B, rows / B, out features)."""
        w = self.params(module)
        n_out, k = w[0].shape
        rows = self.rows if rows is None else rows
        flops = 2 * rows * n_out * k + (rows * n_out if len(w) > 1 else 0)
        B = self.d.B
        out = self.act(name + ".out", out_shape or (B, rows // B, n_out))
        dtype = compute_dtype(self.adt, w[0].dtype)
        return self.add(name, "matmul", op, layer, flops, dtype, (x, *w), (out,), after)

    def norm(self, name: str, layer: int, x: Tensor, after: tuple[str, ...]) -> Tensor:
        return self.vector(name, "norm", layer, self.m.norm, (x, *self.params(name)),
                           x.shape, after)

    def all_reduce(self, name: str, layer: int, x: Tensor, after: str) -> tuple[Tensor, str]:
        """Sum `x` over the tp devices; a no-op (nothing added) when tp = 1."""
        if self.spec.tp == 1:
            return x, after
        out = self.act(name + ".out", x.shape)
        self.add(name, "collective", "all_reduce", layer, 0, self.adt, (x,), (out,), (after,),
                 group=self.spec.tp)
        return out, name

    def core(self, shape: CoreShape) -> AttentionCore:
        got = self.cores.get(shape)
        if got is None:
            got = self.cores[shape] = AttentionCore(self.spec, self.d, shape)
        return got

    def attention_core(self, i: int, shape: CoreShape, q: tuple[Tensor, ...],
                       after: tuple[str, ...], value_after: tuple[str, ...]) -> Tensor:
        """Layer i's scores, softmax and values (a rule: they change per decode step);
        returns the values' output (B, T, H x v_dim)."""
        d, p = self.d, f"h{i}.attn."
        out = self.act(p + "value.out", (d.B, d.T, d.H * shape.v_dim))
        c = self.core(shape)
        score, softmax, value = c.ops(self.attend, c.names(i), q, out)
        self.add(p + "score", "matmul", "attn_score", i, dtype=d.sdt, after=after, **score)
        self.add(p + "softmax", "vector", "softmax", i, dtype=self.adt, after=(p + "score",),
                 **softmax)
        self.add(p + "value", "matmul", "attn_value", i, dtype=d.sdt,
                 after=(p + "softmax", *value_after), **value)
        self.rules.append(c.rule(i, q, out))
        return out

    # -- the model --------------------------------------------------------------------
    def build(self) -> nx.DiGraph:
        x, src = self.embeddings()
        for i in range(self.m.n_layers):
            x, src = self.layer(i, x, src)
        m, B, D = self.m, self.d.B, self.m.d_model
        if m.final_norm:
            x = self.norm("final_norm", -1, x, (src,))
            src = "final_norm"
        if self.sampled:
            S = self.sampled
            last = self.act(x.name, (S, 1, D))  # LM head reads the last position only
            w_name = "embed.weight" if m.tied_embeddings else "lm_head.weight"
            w = (self.weight(w_name, -(-m.vocab // self.spec.tp)),
                 *((self.weight("lm_head.bias"),) if m.lm_head_bias else ()))
            vocab = w[0].shape[0]
            flops = 2 * S * D * vocab + (S * vocab if m.lm_head_bias else 0)
            logits = self.add("lm_head", "matmul", "lm_head", -1, flops,
                              compute_dtype(self.adt, w[0].dtype), (last, *w),
                              (self.act("lm_head.out", (S, 1, vocab)),), (src,))
            if m.logit_softcap:  # c tanh(logits / c)
                self.vector("lm_head.softcap", "activation", -1, 3, (logits,), logits.shape,
                            ("lm_head",))
        if m.pooler:
            first = self.act(x.name, (B, 1, D))  # [CLS], the first position
            y = self.linear("pooler", "pooler", -1, first, "pooler", (src,), rows=B)
            self.vector("pooler.tanh", "activation", -1, "tanh", (y,), y.shape, ("pooler",))
        self.G.graph["per_step"] = tuple(n for r in self.rules for n in r.nodes)
        return self.G

    def embeddings(self) -> tuple[Tensor, str]:
        m, B, T, D = self.m, self.d.B, self.d.T, self.m.d_model
        shape = (B, T, D)
        x = self.add("embed", "vector", "embedding", -1, 0, self.adt,
                     (self.weight("embed.weight", self.rows),),
                     (self.act("embed.out", shape),), ())
        src = "embed"
        if m.embed_scale:  # Gemma: x sqrt(d_model)
            x = self.vector("embed_scale", "pos_embedding", -1, 1, (x,), shape, (src,))
            src = "embed_scale"
        if m.positions == "learned":  # T rows, broadcast over the batch
            x = self.vector("pos_embed", "pos_embedding", -1, "add",
                            (x, self.weight("pos_embed.weight", T)), shape, (src,))
            src = "pos_embed"
        if m.type_vocab:  # one row per token
            x = self.vector("type_embed", "pos_embedding", -1, "add",
                            (x, self.weight("type_embed.weight", self.rows)), shape, (src,))
            src = "type_embed"
        if m.embed_norm:
            x = self.norm("embed_norm", -1, x, (src,))
            src = "embed_norm"
        return x, src

    def layer(self, i: int, x: Tensor, src: str) -> tuple[Tensor, str]:
        """Block i reading residual stream x (written by node src); returns its output."""
        m, p = self.m, f"h{i}."
        if m.block == "post_norm":  # BERT: x + attn -> norm1 -> x + ffn -> norm2
            a, a_src = self.attention(i, x, (src,))
            r = self.vector(p + "attn.residual", "residual", i, "add", (x, a), x.shape,
                            (src, a_src))
            n = self.norm(p + "norm1", i, r, (p + "attn.residual",))
            f, f_src = self.ffn(i, n, (p + "norm1",))
            r = self.vector(p + "mlp.residual", "residual", i, "add", (n, f), x.shape,
                            (p + "norm1", f_src))
            return self.norm(p + "norm2", i, r, (p + "mlp.residual",)), p + "norm2"
        n = self.norm(p + "norm1", i, x, (src,))
        a, a_src = self.attention(i, n, (p + "norm1",))
        if m.block == "parallel":  # x + attn(norm1(x)) + ffn(norm1(x) or norm2(x))
            if m.parallel_mlp_norm:  # GPT-NeoX, Falcon-40B: the FFN has a norm of its own
                n, n_src = self.norm(p + "norm2", i, x, (src,)), p + "norm2"
            else:
                n_src = p + "norm1"
            f, f_src = self.ffn(i, n, (n_src,))
            out = self.act(p + "residual.out", x.shape)
            self.add(p + "residual", "vector", "residual", i, 2 * math.prod(x.shape),
                     self.adt, (x, a, f), (out,), (src, a_src, f_src))
            return out, p + "residual"
        if m.sandwich_norms:  # Gemma 2: x + norm(attn(norm1(x)))
            a = self.norm(p + "attn.post_norm", i, a, (a_src,))
            a_src = p + "attn.post_norm"
        r = self.vector(p + "attn.residual", "residual", i, "add", (x, a), x.shape, (src, a_src))
        n = self.norm(p + "norm2", i, r, (p + "attn.residual",))
        f, f_src = self.ffn(i, n, (p + "norm2",))
        if m.sandwich_norms:
            f = self.norm(p + "mlp.post_norm", i, f, (f_src,))
            f_src = p + "mlp.post_norm"
        r = self.vector(p + "mlp.residual", "residual", i, "add", (r, f), x.shape,
                        (p + "attn.residual", f_src))
        return r, p + "mlp.residual"

    def attention(self, i: int, x: Tensor, after: tuple[str, ...]) -> tuple[Tensor, str]:
        """Layer i's (grouped-query) attention; returns its output and node."""
        m, d, p = self.m, self.d, f"h{i}.attn."
        B, T = d.B, d.T
        window = m.window(i)
        q = self.act(p + "q", (B, d.H, T, d.dh))
        cached = self.new_positions(window)
        new_kv = (B, d.Hkv, cached, d.dh)
        rotary = m.positions == "rotary"
        if d.cached:
            k = (self.act(p + "k_new", (B, d.Hkv, T, d.dh)) if rotary
                 else Tensor(f"h{i}.k_cache", "kv_cache", new_kv, d.kdt,
                             tensor_bytes(new_kv, d.kdt)))
            v = Tensor(f"h{i}.v_cache", "kv_cache", new_kv, d.kdt, tensor_bytes(new_kv, d.kdt))
        else:
            k, v = self.act(p + "k", new_kv), self.act(p + "v", new_kv)
        modules = ("qkv",) if m.fused_qkv else ("q", "k", "v")
        w = tuple(t for mod in modules for t in self.params(p + mod))
        n_out = (d.H + 2 * d.Hkv) * d.dh
        bias = m.attn_bias or m.qkv_bias
        flops = 2 * self.rows * n_out * m.d_model + (self.rows * n_out if bias else 0)
        self.add(p + "qkv", "matmul", "qkv", i, flops, self.mdt, (x, *w), (q, k, v), after)
        qkv_src = src = p + "qkv"
        if rotary:
            rot = FLOPS_PER_ELEMENT["rotary"] * B * T * (d.H + d.Hkv) * m.rotated_dims
            q_rot = self.act(p + "q_rot", q.shape)
            k_cache = Tensor(f"h{i}.k_cache", "kv_cache", new_kv, d.kdt,
                             tensor_bytes(new_kv, d.kdt))  # ModelConfig: rotary => decoder
            self.add(p + "rotary", "vector", "rotary", i, rot, self.adt, (q, k), (q_rot, k_cache),
                     (src,))
            q, src = q_rot, p + "rotary"
        softmax = FLOPS_PER_ELEMENT["softmax"] + (3 if m.attn_softcap else 0)
        shape = CoreShape(d.Hkv, d.dh, d.dh, window, softmax=softmax)
        o = self.attention_core(i, shape, (q,), (src,), (qkv_src,))
        y = self.linear(p + "out", "attn_out", i, o, p + "out", (p + "value",))
        return self.all_reduce(p + "all_reduce", i, y, p + "out")

    def new_positions(self, window: int) -> int:
        """Positions per sequence row a layer appends to its KV cache this phase; a window's
        cache keeps its last `window` only."""
        T = self.d.T
        return min(T, window) if window and self.d.cached else T

    def ffn(self, i: int, x: Tensor, after: tuple[str, ...]) -> tuple[Tensor, str]:
        """Layer i's dense FFN; returns its output and node."""
        y, src = self.mlp(f"h{i}.mlp.", i, x, after)
        return self.all_reduce(f"h{i}.mlp.all_reduce", i, y, src)

    def mlp(self, p: str, i: int, x: Tensor, after: tuple[str, ...],
            op: str = "ffn") -> tuple[Tensor, str]:
        """A dense FFN of the weights under `p` (its width theirs); returns (y, its node)."""
        u = self.linear(p + "up", op + "_up", i, x, p + "up", after)
        if self.m.activation in GATED:
            g = self.linear(p + "gate", op + "_gate", i, x, p + "gate", after)
            a = self.vector(p + "act", "activation", i, self.m.activation, (g, u), u.shape,
                            (p + "gate", p + "up"))
        else:
            a = self.vector(p + "act", "activation", i, self.m.activation, (u,), u.shape,
                            (p + "up",))
        return self.linear(p + "down", op + "_down", i, a, p + "down", (p + "act",)), p + "down"
