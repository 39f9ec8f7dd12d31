"""A decoder built from a workloads.ModelConfig with random weights, for timing model runs.

The parameters are exactly `workloads.parameter_shapes(cfg)` (so the bytes are memwall's),
random normal (never zeros: METHOD.md), in bf16. One eager PyTorch op per memwall op where
it can be: separate q, k, v (or fused qkv) projections, unfused attention (scores, softmax,
values, as memwall's `--fusion none` graph), rotary on the rotated dims, norms, the MLP, and
the LM head on the last position only. Grouped-query heads share K and V without copies:
the G query heads of a KV head are rows of one matmul, (B, Hkv, G x T, dh) @ (B, Hkv, dh, S).
Decoders only (pre-norm or parallel blocks); encoders are refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workloads import ModelConfig, parameter_shapes

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (K, V): (B, Hkv, S, dh)


class Decoder:
    def __init__(self, cfg: ModelConfig, device: str | torch.device = "cuda",
                 dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> None:
        if cfg.arch != "decoder" or cfg.block == "post_norm":
            raise ValueError(f"{cfg.name}: expected a pre-norm or parallel decoder")
        self.cfg, self.device, self.dtype = cfg, torch.device(device), dtype
        gen = torch.Generator(self.device).manual_seed(seed)
        self.w: dict[str, torch.Tensor] = {}
        for name, shape in parameter_shapes(cfg).items():
            t = torch.randn(shape, generator=gen, device=self.device, dtype=torch.float32)
            norm = "norm" in name and name.endswith(".weight")
            self.w[name] = (1 + 0.1 * t if norm else 0.02 * t).to(dtype)
        r = cfg.rotated_dims
        self.inv_freq = (1.0 / 10000 ** (torch.arange(0, r, 2, device=self.device,
                                                      dtype=torch.float32) / r)) if r else None

    def cache(self, batch: int, length: int, seed: int = 1) -> Cache:
        """Random K and V of `length` positions per layer (what a prefill would have left)."""
        c = self.cfg
        gen = torch.Generator(self.device).manual_seed(seed)
        shape = (batch, c.n_kv_heads, length, c.d_head)
        return [(torch.randn(shape, generator=gen, device=self.device, dtype=self.dtype),
                 torch.randn(shape, generator=gen, device=self.device, dtype=self.dtype))
                for _ in range(c.n_layers)]

    def rope(self, pos0: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin (T, rotated_dims / 2) of positions pos0 .. pos0 + T - 1."""
        if self.inv_freq is None:
            return None
        pos = torch.arange(pos0, pos0 + tokens, device=self.device, dtype=torch.float32)
        ang = torch.outer(pos, self.inv_freq)
        return ang.cos().to(self.dtype), ang.sin().to(self.dtype)

    def forward(self, tokens: torch.Tensor, pos0: int, cache: Cache,
                rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Logits (B, vocab) of the last position, after feeding `tokens` (B, T) at positions
        pos0 .. pos0 + T - 1, writing their K and V into `cache` (which holds at least
        pos0 + T positions) and attending, causally, over positions 0 .. pos0 + T - 1."""
        c, w = self.cfg, self.w
        B, T = tokens.shape
        if c.positions == "learned" and pos0 + T > c.pos_rows:
            raise ValueError(f"{c.name}: positions up to {pos0 + T}; its learned table has "
                             f"{c.pos_rows}")
        x = F.embedding(tokens, w["embed.weight"])  # (B, T, d)
        if c.positions == "learned":
            x = x + w["pos_embed.weight"][pos0:pos0 + T]
        S = pos0 + T
        mask = None
        if T > 1:  # causal: row t sees positions <= pos0 + t
            rows = torch.arange(T, device=self.device)[:, None] + pos0
            mask = torch.zeros(T, S, device=self.device, dtype=self.dtype).masked_fill(
                torch.arange(S, device=self.device)[None, :] > rows, float("-inf"))
        for i in range(c.n_layers):
            p = f"h{i}."
            h = self._norm(x, p + "norm1")
            a = self._attention(h, p, cache[i], pos0, rope, mask)
            if c.block == "parallel":
                x = x + a + self._mlp(h, p)
            else:
                x = x + a
                x = x + self._mlp(self._norm(x, p + "norm2"), p)
        if c.final_norm:
            x = self._norm(x, "final_norm")
        head = w["embed.weight"] if c.tied_embeddings else w["lm_head.weight"]
        return F.linear(x[:, -1], head, w.get("lm_head.bias"))

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        wt = self.w[name + ".weight"]
        if self.cfg.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), wt, self.w[name + ".bias"])
        return F.rms_norm(x, (x.shape[-1],), wt, 1e-5)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def _attention(self, h: torch.Tensor, p: str, kv: tuple[torch.Tensor, torch.Tensor],
                   pos0: int, rope: tuple[torch.Tensor, torch.Tensor] | None,
                   mask: torch.Tensor | None) -> torch.Tensor:
        c = self.cfg
        B, T, _ = h.shape
        H, Hkv, dh = c.n_heads, c.n_kv_heads, c.d_head
        if c.fused_qkv:
            q, k, v = self._linear(h, p + "attn.qkv").split([H * dh, Hkv * dh, Hkv * dh], -1)
        else:
            q, k, v = (self._linear(h, p + f"attn.{x}") for x in "qkv")
        q = q.view(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
        k = k.view(B, T, Hkv, dh).transpose(1, 2)
        v = v.view(B, T, Hkv, dh).transpose(1, 2)
        if rope is not None:
            q, k = _rotate(q, rope), _rotate(k, rope)
        K, V = kv
        K[:, :, pos0:pos0 + T] = k
        V[:, :, pos0:pos0 + T] = v
        S = pos0 + T
        G = H // Hkv
        q = (q * (1 / math.sqrt(dh))).reshape(B, Hkv, G * T, dh)  # the G heads of a KV head
        scores = q @ K[:, :, :S].transpose(-1, -2)  # (B, Hkv, G x T, S)
        if mask is not None:
            scores = scores + mask.repeat(G, 1)
        probs = torch.softmax(scores, dim=-1)
        out = (probs @ V[:, :, :S]).view(B, H, T, dh).transpose(1, 2).reshape(B, T, H * dh)
        return self._linear(out, p + "attn.out")

    def _mlp(self, h: torch.Tensor, p: str) -> torch.Tensor:
        if self.cfg.activation == "swiglu":
            a = F.silu(self._linear(h, p + "mlp.gate")) * self._linear(h, p + "mlp.up")
        elif self.cfg.activation == "gelu":
            a = F.gelu(self._linear(h, p + "mlp.up"), approximate="tanh")
        else:
            a = F.relu(self._linear(h, p + "mlp.up"))
        return self._linear(a, p + "mlp.down")


def _rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotary embedding (GPT-NeoX halves) of the first rotated dims of x (B, heads, T, dh)."""
    cos, sin = rope  # (T, r / 2)
    r = 2 * cos.shape[-1]
    x1, x2, rest = x[..., :r // 2], x[..., r // 2:r], x[..., r:]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return torch.cat([out, rest], dim=-1) if rest.shape[-1] else out
