"""A Transformer's shape (ModelConfig), its parameter tensors and count, and numeric precision.

Weight shapes use PyTorch's nn.Linear layout, (out_features, in_features), for every
architecture (GPT-2's Conv1D stores the transpose; the count is the same).

Bytes per element (`tensor_bytes`), the rule used for every tensor class:
    fp32 4; bf16, fp16 2; fp8, int8 1 (one per-tensor scale, not counted);
    int4 half a byte (two per byte, packed along the last dimension, so a row of odd length
    rounds up), plus one bf16 scale and one bf16 zero point (4 bytes) per group of
    INT4_GROUP = 32 consecutive elements of the last (input-feature) dimension of each row:
    0.625 byte per element. Group size 32 is what gpt-fast's int4 figures in
    ../shared/reference/measured.csv used (github.com/pytorch-labs/gpt-fast README).
A matmul computes in the wider of its two operands' dtypes (`compute_dtype`): weight-only
int8 with bf16 activations computes in bf16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sim.errors import MemwallError
from sim.opgraph import DTYPE_BITS, DTYPES

Arch = Literal["decoder", "encoder"]
Activation = Literal["gelu", "relu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["learned", "rotary"]
Block = Literal["pre_norm", "post_norm", "parallel"]

INT4_GROUP = 32  # elements per int4 quantization group (gpt-fast, measured.csv)
INT4_GROUP_OVERHEAD_BYTES = 4  # one bf16 scale + one bf16 zero point per group


class WorkloadError(MemwallError):
    """A workload request that cannot be built (bad shape, precision, run or split)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The shape of one Transformer. Sizes are element counts; see `parameter_shapes`."""

    name: str
    arch: Arch
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int  # < n_heads: grouped-query attention
    d_head: int  # n_heads * d_head may differ from d_model (GPT-3 13B, Table 2.1)
    d_ff: int
    vocab: int
    max_positions: int  # trained context, positions
    activation: Activation
    norm: Norm
    positions: Positions
    tied_embeddings: bool
    attn_bias: bool  # biases on the q, k, v and output projections
    mlp_bias: bool  # biases on the FFN projections
    block: Block = "pre_norm"  # parallel: GPT-J, attention and FFN both read one norm
    fused_qkv: bool = False  # one c_attn weight (GPT-2) instead of q, k, v weights
    rotary_dims: int = 0  # rotated dims per head; 0 means all of d_head (rotary only)
    lm_head_bias: bool = False  # GPT-J
    final_norm: bool = True  # BERT has none
    embed_norm: bool = False  # BERT: LayerNorm after the summed embeddings
    type_vocab: int = 0  # BERT token-type (segment) embeddings
    pooler: bool = False  # BERT pooler: dense (d, d) + tanh on the first token
    pos_offset: int = 0  # extra rows of the learned position table (OPT: 2)

    def __post_init__(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff", "vocab",
                    "max_positions"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkloadError(f"model {self.name!r}: {key} = {value!r}: expected an int >= 1")
        for key, allowed in (("arch", ("decoder", "encoder")),
                             ("activation", ("gelu", "relu", "swiglu")),
                             ("norm", ("layernorm", "rmsnorm")),
                             ("positions", ("learned", "rotary")),
                             ("block", ("pre_norm", "post_norm", "parallel"))):
            if getattr(self, key) not in allowed:
                raise WorkloadError(f"model {self.name!r}: {key} = {getattr(self, key)!r}: "
                                    f"expected one of {', '.join(allowed)}")
        if self.n_heads % self.n_kv_heads:
            raise WorkloadError(f"model {self.name!r}: n_kv_heads = {self.n_kv_heads}: expected "
                                f"a divisor of n_heads = {self.n_heads}")
        if self.rotary_dims < 0 or self.rotary_dims > self.d_head or self.rotary_dims % 2:
            raise WorkloadError(f"model {self.name!r}: rotary_dims = {self.rotary_dims}: "
                                f"expected an even number in [0, d_head = {self.d_head}]")
        if self.arch == "encoder" and (self.tied_embeddings or self.positions == "rotary"):
            raise WorkloadError(f"model {self.name!r}: arch 'encoder' expects learned positions "
                                "and untied embeddings (it has no LM head)")

    @property
    def n_params(self) -> int:
        """Exact parameter count (buffers such as attention masks excluded)."""
        return sum(math.prod(s) for s in parameter_shapes(self).values())

    @property
    def rotated_dims(self) -> int:
        """Dims per head that rotary embedding rotates (0 for learned positions)."""
        if self.positions != "rotary":
            return 0
        return self.rotary_dims or self.d_head

    @property
    def pos_rows(self) -> int:
        """Rows of the learned position table."""
        return self.max_positions + self.pos_offset


def parameter_shapes(cfg: ModelConfig, tp: int = 1) -> dict[str, tuple[int, ...]]:
    """Every parameter tensor held by one device of `tp`, name -> shape (out, in).

    Megatron-style split: q/k/v, FFN up and gate by output rows (column-parallel), attention
    output and FFN down by input columns (row-parallel); their biases that follow the
    all-reduce, the norms, the embedding and position tables and the pooler are replicated.
    The untied LM head is split over the vocabulary (ceil(vocab / tp) rows per device).
    """
    d, dh = cfg.d_model, cfg.d_head
    q_dim = cfg.n_heads * dh // tp
    kv_dim = cfg.n_kv_heads * dh // tp
    ff = cfg.d_ff // tp
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (cfg.vocab, d)}
    if cfg.positions == "learned":
        shapes["pos_embed.weight"] = (cfg.pos_rows, d)
    if cfg.type_vocab:
        shapes["type_embed.weight"] = (cfg.type_vocab, d)
    if cfg.embed_norm:
        shapes.update(_norm_shapes(cfg, "embed_norm"))
    for i in range(cfg.n_layers):
        p = f"h{i}."
        shapes.update(_norm_shapes(cfg, p + "norm1"))
        if cfg.fused_qkv:
            shapes[p + "attn.qkv.weight"] = (q_dim + 2 * kv_dim, d)
            if cfg.attn_bias:
                shapes[p + "attn.qkv.bias"] = (q_dim + 2 * kv_dim,)
        else:
            for proj, rows in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                shapes[f"{p}attn.{proj}.weight"] = (rows, d)
                if cfg.attn_bias:
                    shapes[f"{p}attn.{proj}.bias"] = (rows,)
        shapes[p + "attn.out.weight"] = (d, q_dim)
        if cfg.attn_bias:
            shapes[p + "attn.out.bias"] = (d,)
        if cfg.block != "parallel":
            shapes.update(_norm_shapes(cfg, p + "norm2"))
        if cfg.activation == "swiglu":
            shapes[p + "mlp.gate.weight"] = (ff, d)
            if cfg.mlp_bias:
                shapes[p + "mlp.gate.bias"] = (ff,)
        shapes[p + "mlp.up.weight"] = (ff, d)
        if cfg.mlp_bias:
            shapes[p + "mlp.up.bias"] = (ff,)
        shapes[p + "mlp.down.weight"] = (d, ff)
        if cfg.mlp_bias:
            shapes[p + "mlp.down.bias"] = (d,)
    if cfg.final_norm:
        shapes.update(_norm_shapes(cfg, "final_norm"))
    if cfg.arch == "decoder" and not cfg.tied_embeddings:
        shapes["lm_head.weight"] = (-(-cfg.vocab // tp), d)
    if cfg.arch == "decoder" and cfg.lm_head_bias:
        shapes["lm_head.bias"] = (-(-cfg.vocab // tp),)
    if cfg.pooler:
        shapes["pooler.weight"] = (d, d)
        shapes["pooler.bias"] = (d,)
    return shapes


def _norm_shapes(cfg: ModelConfig, prefix: str) -> dict[str, tuple[int, ...]]:
    if cfg.norm == "layernorm":
        return {prefix + ".weight": (cfg.d_model,), prefix + ".bias": (cfg.d_model,)}
    return {prefix + ".weight": (cfg.d_model,)}


@dataclass(frozen=True, slots=True)
class Precision:
    """Storage dtype per tensor class; each one of sim.opgraph.DTYPES."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv_cache: str = "bf16"

    def __post_init__(self) -> None:
        for key in ("weights", "activations", "kv_cache"):
            value = getattr(self, key)
            if value not in DTYPE_BITS:
                raise WorkloadError(f"precision {key} = {value!r}: expected one of "
                                    f"{', '.join(DTYPES)}")

    @classmethod
    def uniform(cls, dtype: str) -> Precision:
        return cls(dtype, dtype, dtype)


def tensor_bytes(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of a tensor of `shape` stored as `dtype`, int4 group scales included."""
    n = math.prod(shape)
    if dtype != "int4":
        return n * DTYPE_BITS[dtype] // 8
    cols = shape[-1] if shape else 1  # packed and grouped along the last dimension, per row
    rows = n // cols if cols else 0
    return rows * (-(-cols // 2) + -(-cols // INT4_GROUP) * INT4_GROUP_OVERHEAD_BYTES)


def compute_dtype(a: str, b: str) -> str:
    """A matmul's compute precision: the wider operand dtype; on a tie, `a`'s."""
    return b if DTYPE_BITS[b] > DTYPE_BITS[a] else a
