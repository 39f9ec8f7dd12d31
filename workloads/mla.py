"""Multi-head latent attention (DeepSeek-V2, V3), in the absorbed form decode kernels run.

Per position and layer the KV cache holds one compressed latent c (kv_lora_rank = r elements)
and the rotary part of the key (qk_rope_head_dim = rope), shared by every head:
(B, 1, positions, r + rope). The key up-projection is absorbed into the query and the value
up-projection applied after attention (DeepSeek-V2 paper, section 2.1.2; FlashMLA and vLLM
run decode this way), so attention reads the latent cache itself, as multi-query attention
with keys of r + rope and values of r elements. Prefill is modelled the same way (a runtime
that decompresses K and V for the prefill does fewer attention FLOPs: nope + rope per score
instead of r + rope).

Ops of layer i (H heads on this device, dh = nope + rope the query/key head dim, v the value
head dim, x: (B, T, d)):

    h{i}.attn.q_down, q_norm, q_up   (q_lora_rank > 0) or h{i}.attn.q   -> q (B, H, T, dh)
    h{i}.attn.kv_down    matmul  x @ kv_down.T                  -> (B, T, r + rope)
    h{i}.attn.kv_norm    vector  rmsnorm of the latent           -> (B, T, r)
    h{i}.attn.rotary     vector  rotates q's and the key's rope parts, writes the cache
                                 entry (B, 1, T, r + rope): 3 FLOPs per rotated element
    h{i}.attn.q_absorb   matmul  q_nope (B, H, T, nope) @ k_up per head -> (B, H, T, r)
    h{i}.attn.score, softmax, value   over the latent cache (StepRule, as any attention):
                                 scores 2 B H T kv (r + rope), values 2 B H T kv r
    h{i}.attn.v_up       matmul  (B, H, T, r) @ v_up per head   -> (B, T, H v)
    h{i}.attn.out        matmul  -> (B, T, d), then the all-reduce (tp > 1)

Tensor parallel: heads split (q_up or q, k_up, v_up, out); the down-projections, their norms
and the latent cache are replicated, every device caching the whole latent.
"""

from __future__ import annotations

from sim.opgraph import Tensor
from workloads.block import FLOPS_PER_ELEMENT, CoreShape, PhaseBuilder
from workloads.model import tensor_bytes


def mla_attention(b: PhaseBuilder, i: int, x: Tensor,
                  after: tuple[str, ...]) -> tuple[Tensor, str]:
    """Add layer i's multi-head latent attention reading x; returns its output and node."""
    m, d, p = b.m, b.d, f"h{i}.attn."
    B, T, H, dh = d.B, d.T, d.H, d.dh
    r, rope = m.kv_lora_rank, m.rotary_dims
    nope = dh - rope
    q_shape = (B, H, T, dh)
    if m.q_lora_rank:
        qd = b.linear(p + "q_down", "q_down", i, x, p + "q_down", after)
        qn = b.norm(p + "q_norm", i, qd, (p + "q_down",))
        q = b.linear(p + "q_up", "q_up", i, qn, p + "q_up", (p + "q_norm",), out_shape=q_shape)
        q_src = p + "q_up"
    else:
        q = b.linear(p + "q", "q_proj", i, x, p + "q", after, out_shape=q_shape)
        q_src = p + "q"
    c = b.linear(p + "kv_down", "kv_down", i, x, p + "kv_down", after)
    c_lat = b.act(c.name, (B, T, r))  # the latent part of kv_down's output
    cn = b.vector(p + "kv_norm", "norm", i, m.norm, (c_lat, *b.params(p + "kv_norm")),
                  (B, T, r), (p + "kv_down",))
    q_pe = b.act(q.name, (B, H, T, rope))
    k_pe = b.act(c.name, (B, T, rope))
    q_rot = b.act(p + "q_rot", (B, H, T, rope))
    entry = (B, 1, T, r + rope)
    cache = Tensor(f"h{i}.kv_cache", "kv_cache", entry, d.kdt, tensor_bytes(entry, d.kdt))
    b.add(p + "rotary", "vector", "rotary", i, FLOPS_PER_ELEMENT["rotary"] * B * T * (H + 1) * rope,
          b.adt, (q_pe, k_pe, cn), (q_rot, cache), (q_src, p + "kv_down", p + "kv_norm"))
    q_nope = b.act(q.name, (B, H, T, nope))
    k_up = b.weight(p + "k_up.weight")
    q_lat = b.act(p + "q_absorb.out", (B, H, T, r))
    b.add(p + "q_absorb", "matmul", "q_absorb", i, 2 * B * T * H * nope * r,
          b.mdt, (q_nope, k_up), (q_lat,), (q_src,))
    shape = CoreShape(1, r + rope, r, shared=True)
    o = b.attention_core(i, shape, (q_lat, q_rot), (p + "q_absorb", p + "rotary"), ())
    o_heads = b.act(o.name, (B, H, T, r))
    v_up = b.weight(p + "v_up.weight")
    o_v = b.act(p + "v_up.out", (B, T, H * m.v_head_dim))
    b.add(p + "v_up", "matmul", "v_up", i, 2 * B * T * H * r * m.v_head_dim, b.mdt,
          (o_heads, v_up), (o_v,), (p + "value",))
    y = b.linear(p + "out", "attn_out", i, o_v, p + "out", (p + "v_up",))
    return b.all_reduce(p + "all_reduce", i, y, p + "out")
