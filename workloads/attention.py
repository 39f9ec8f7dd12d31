"""The ops that change from one decode step to the next, and the attention core among them.

A builder declares each group of such ops as a `StepRule` and names them in the graph's
`per_step` (sim/opgraph.py); graph.phases moves a decode template by them, counts.run_counts
evaluates one rule per group of alike ones, fusion.fuse refreshes the kernels that hold them.
`AttentionCore` gives the scores, softmax and values of every attention layout (grouped-query
attention, with or without a sliding window, and the latent cache of MLA) at any step. Shapes:
queries (B, heads, T, k_dim), keys and values (B, kv_heads, positions, k_dim or v_dim), scores
and probabilities (B, heads, T, positions attended).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sim.opgraph import Tensor
from workloads.model import compute_dtype, tensor_bytes
from workloads.spec import RunSpec

SOFTMAX_FLOPS = 5  # per score: max, subtract, exp, sum, divide (block.FLOPS_PER_ELEMENT)


@dataclass(frozen=True, slots=True)
class Dims:
    """Per-device sizes and dtypes of one phase."""

    B: int  # batch
    T: int  # tokens per sequence in this phase
    H: int  # query heads on this device
    Hkv: int  # KV heads on this device
    dh: int  # d_head
    adt: str  # activation dtype
    kdt: str  # K/V dtype: the KV cache's (decoder) or the activations' (encoder)
    sdt: str  # attention matmul compute dtype
    cached: bool  # decoder: K and V live in a per-layer KV cache

    @classmethod
    def of(cls, spec: RunSpec, step: int) -> Dims:
        m, p = spec.model, spec.precision
        cached = m.arch == "decoder"
        kdt = p.kv_cache if cached else p.activations
        return cls(spec.batch, spec.tokens(step), m.n_heads // spec.tp, m.n_kv_heads // spec.tp,
                   m.d_head, p.activations, kdt, compute_dtype(p.activations, kdt), cached)


class StepRule(NamedTuple):
    """Ops of a phase whose attributes change from one decode step to the next (the builder
    declares them; graph.phases, counts.run_counts and fusion.fuse read the declaration).

    `write(step, dicts)` sets, in the attribute dict of each node of `nodes` (in order), its
    flops, reads and writes (and parts, if it has them) at decode step `step`. Rules of
    equal `key` give equal FLOPs and MOPs at every step (layers alike but for their tensor
    names), so counts evaluate one of them.
    """

    nodes: tuple[str, ...]
    key: Hashable
    write: Callable[[int, Sequence[dict[str, Any]]], None]


@dataclass(frozen=True, slots=True)
class CoreShape:
    """What sets a layer's attention core apart: its cache layout, window and softmax."""

    kv_heads: int  # heads of the cached keys and values on this device
    k_dim: int  # elements of one head's key (the scores' dot product)
    v_dim: int  # elements of one head's value (a query head's output)
    window: int = 0  # positions each query attends to; 0: every one
    shared: bool = False  # one cached tensor serves as keys and values (MLA's latent)
    softmax: int = SOFTMAX_FLOPS  # FLOPs per score (soft-capping adds 3)


class AttentionCore:
    """attn_score, softmax and attn_value of the layers of one CoreShape (shapes and bytes
    worked out once per step for all of them): the ops whose attributes change per decode
    step. Queries (B, H, T, k_dim) read keys (B, kv_heads, keys, k_dim) and write scores
    (B, H, T, attend): attend = kv_len, or the window; keys = kv_len, or the window plus the
    T - 1 positions before it that the phase's earlier queries see."""

    def __init__(self, spec: RunSpec, d: Dims, shape: CoreShape) -> None:
        self.spec, self.d, self.shape = spec, d, shape
        self._at: tuple = (None,)

    def key(self) -> Hashable:
        return ("attention", self.shape)

    def _shapes(self, kv_len: int) -> tuple:
        if self._at[0] == kv_len:
            return self._at
        d, c = self.d, self.shape
        B, H, T = d.B, d.H, d.T
        attend = min(kv_len, c.window) if c.window else kv_len
        keys = min(kv_len, c.window + T - 1) if c.window else kv_len
        kv_shape = (B, c.kv_heads, keys, c.k_dim)
        s_shape = (B, H, T, attend)
        self._at = (kv_len, kv_shape, tensor_bytes(kv_shape, d.kdt), s_shape,
                    tensor_bytes(s_shape, d.adt), 2 * B * H * T * attend * c.k_dim,
                    c.softmax * B * H * T * attend, 2 * B * H * T * attend * c.v_dim)
        return self._at

    def names(self, layer: int) -> tuple[str, str, str, str]:
        """Names of the keys, values, scores and probabilities of `layer`."""
        if self.shape.shared:
            k = v = f"h{layer}.kv_cache"
        else:
            k, v = ((f"h{layer}.k_cache", f"h{layer}.v_cache") if self.d.cached
                    else (f"h{layer}.attn.k", f"h{layer}.attn.v"))
        return k, v, f"h{layer}.attn.score.out", f"h{layer}.attn.softmax.out"

    def ops(self, kv_len: int, names: tuple[str, str, str, str], q: tuple[Tensor, ...],
            out: Tensor) -> tuple[dict, dict, dict]:
        """The three ops of a layer (tensor `names`, queries `q`: the scores read q[0], the
        keys, then q[1:]) over a cache of `kv_len` positions, as node attributes."""
        dicts: tuple[dict, dict, dict] = ({}, {}, {})
        self._write(kv_len, names, q, out, dicts)
        return dicts

    def _write(self, kv_len: int, names: tuple[str, str, str, str], q: tuple[Tensor, ...],
               out: Tensor, dicts: Sequence[dict]) -> None:
        _, kv_shape, kv_bytes, s_shape, s_bytes, mac_s, f_softmax, mac_v = self._shapes(kv_len)
        d = self.d
        cls = "kv_cache" if d.cached else "activation"
        kname, vname, sname, pname = names
        score, softmax, value = dicts
        k = Tensor(kname, cls, kv_shape, d.kdt, kv_bytes)
        scores = Tensor(sname, "activation", s_shape, d.adt, s_bytes)
        score["flops"], score["reads"] = mac_s, (q[0], k, *q[1:])
        score["writes"] = softmax["reads"] = (scores,)
        softmax["flops"] = f_softmax
        softmax["writes"] = (Tensor(pname, "activation", s_shape, d.adt, s_bytes),)
        value["flops"], value["writes"] = mac_v, (out,)
        value["reads"] = (softmax["writes"][0],
                          k if vname == kname else Tensor(vname, cls, kv_shape, d.kdt, kv_bytes))

    def rule(self, layer: int, q: tuple[Tensor, ...], out: Tensor) -> StepRule:
        """The rule of `layer`'s three ops (a decode step k attends over prompt_len + k)."""
        p = f"h{layer}.attn."
        kname, vname, sname, pname = self.names(layer)
        shapes, prompt, d = self._shapes, self.spec.prompt_len, self.d
        cls, kdt, adt, q0, q_rest = "kv_cache", d.kdt, d.adt, q[0], q[1:]

        def write(step: int, dicts: Sequence[dict]) -> None:  # _write, unrolled: per step
            _, kv_shape, kv_bytes, s_shape, s_bytes, mac_s, f_softmax, mac_v = shapes(
                prompt + step)
            score, softmax, value = dicts
            k = Tensor(kname, cls, kv_shape, kdt, kv_bytes)
            scores = (Tensor(sname, "activation", s_shape, adt, s_bytes),)
            probs = Tensor(pname, "activation", s_shape, adt, s_bytes)
            score["flops"], score["reads"], score["writes"] = mac_s, (q0, k, *q_rest), scores
            softmax["flops"], softmax["reads"], softmax["writes"] = f_softmax, scores, (probs,)
            value["flops"], value["writes"] = mac_v, (out,)
            value["reads"] = (probs, k if vname == kname
                              else Tensor(vname, cls, kv_shape, kdt, kv_bytes))

        return StepRule((p + "score", p + "softmax", p + "value"), self.key(), write)
