"""A Transformer's shape (ModelConfig), its parameter tensors and count, and numeric precision.

Weight shapes use PyTorch's nn.Linear layout, (out_features, in_features), for every
architecture (GPT-2's Conv1D stores the transpose; the count is the same).

Bytes per element (`tensor_bytes`), the rule used for every tensor class:
    fp32 4; bf16, fp16 2; fp8, int8 1 (one per-tensor scale, or fp8's per-block scales, not
    counted: 4 bytes per 128 x 128 block is 0.02%);
    int4 half a byte (two per byte, packed along the last dimension, so a row of odd length
    rounds up), plus one bf16 scale and one bf16 zero point (4 bytes) per group of
    INT4_GROUP = 32 consecutive elements of the last (input-feature) dimension of each row:
    0.625 byte per element. Group size 32 is what gpt-fast's int4 figures in
    ../shared/reference/measured.csv used (github.com/pytorch-labs/gpt-fast README). A model
    quantized with AWQ or GPTQ (its config's quantization_config) stores its weights with its
    own group size (128 as a rule) and an fp16 scale plus a packed 4-bit zero point (20 bits)
    per group: ModelConfig.quant_group and quant_group_bits.
A matmul computes in the wider of its two operands' dtypes (`compute_dtype`): weight-only
int8 with bf16 activations computes in bf16.

Layers. A layer attends to every position, or, with a sliding window, to the last
`sliding_window` positions (all layers, or all but every `global_every`-th: Gemma 2's
local/global alternation); with `kv_lora_rank` it is multi-head latent attention (DeepSeek-V2,
V3: see workloads/mla.py). Its FFN is dense (d_ff wide) or, with `n_experts`, a mixture of
experts (the first `dense_layers` stay dense; see workloads/moe.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sim.errors import MemwallError
from sim.opgraph import DTYPE_BITS, DTYPES

Arch = Literal["decoder", "encoder"]
Activation = Literal["gelu", "relu", "swiglu", "geglu"]
Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["learned", "rotary"]
Block = Literal["pre_norm", "post_norm", "parallel"]

INT4_GROUP = 32  # elements per int4 quantization group (gpt-fast, measured.csv)
INT4_GROUP_BITS = 32  # one bf16 scale + one bf16 zero point per group
#: stated upper bounds, checked before anything is built (the largest published models have
#: 160 layers, 256 routed experts and a 10M-token context: Llama 4 Scout)
LIMITS = {"n_layers": 1024, "n_experts": 4096, "max_positions": 1 << 24}
GATED = ("swiglu", "geglu")  # activations with a gate projection beside the up projection
#: Weights stored at Precision.embeddings (the tables and LM head a quantized checkpoint keeps
#: in 16 bits); every other weight at Precision.weights.
EMBEDDING_WEIGHTS = frozenset({"embed.weight", "pos_embed.weight", "type_embed.weight",
                               "lm_head.weight", "lm_head.bias"})


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
    qkv_bias: bool = False  # biases on q, k, v only (Qwen2); attn_bias adds the output's too
    parallel_mlp_norm: bool = False  # parallel block: the FFN reads a norm of its own (NeoX)
    sandwich_norms: bool = False  # Gemma 2: a norm after attention and after the FFN too
    embed_scale: bool = False  # Gemma: embeddings times sqrt(d_model), 1 FLOP per element
    attn_softcap: bool = False  # Gemma 2: scores = c tanh(scores / c), 3 FLOPs per score
    logit_softcap: bool = False  # Gemma 2: the same on the logits
    sliding_window: int = 0  # positions a local layer attends to; 0: none
    global_every: int = 0  # with a window: layers i % N == N - 1 are global; 0: none is
    n_experts: int = 0  # routed experts per MoE layer; 0: a dense model
    top_k: int = 0  # experts each token is routed to
    d_ff_expert: int = 0  # FFN width of one routed expert
    d_ff_shared: int = 0  # FFN width of the shared experts, together (0: none)
    shared_gate: bool = False  # Qwen2-MoE: a sigmoid gate (1, d) on the shared experts
    dense_layers: int = 0  # the first layers keep a dense FFN (DeepSeek's first_k_dense)
    router_bias: bool = False  # DeepSeek-V3: a bias per expert on the routing scores
    sigmoid_router: bool = False  # DeepSeek-V3: sigmoid scores (4 FLOPs each), not softmax (5)
    kv_lora_rank: int = 0  # MLA: the compressed latent cached per position; 0: not MLA
    q_lora_rank: int = 0  # MLA: the query's low-rank projection (0: a full q projection)
    v_head_dim: int = 0  # MLA: value head dim (d_head is the query/key head dim)
    weight_dtype: str | None = None  # the checkpoint's quantized weights; None: 16-bit
    quant_group: int = INT4_GROUP  # int4 elements per scale group of a row; 0: whole row
    quant_group_bits: int = INT4_GROUP_BITS  # scale and zero point bits per group

    def __post_init__(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_ff", "vocab",
                    "max_positions"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkloadError(f"model {self.name!r}: {key} = {value!r}: expected an int >= 1")
        for key, high in LIMITS.items():
            if isinstance(getattr(self, key), int) and getattr(self, key) > high:
                raise WorkloadError(f"model {self.name!r}: {key} = {getattr(self, key):,}: "
                                    f"expected at most {high:,} (memwall's stated limit)")
        for key, allowed in (("arch", ("decoder", "encoder")),
                             ("activation", ("gelu", "relu", "swiglu", "geglu")),
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
        for key in ("sliding_window", "global_every", "n_experts", "top_k", "d_ff_expert",
                    "d_ff_shared", "dense_layers", "kv_lora_rank", "q_lora_rank", "v_head_dim",
                    "quant_group", "quant_group_bits"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise WorkloadError(f"model {self.name!r}: {key} = {value!r}: expected an "
                                    "int >= 0")
        if self.weight_dtype is not None and self.weight_dtype not in DTYPE_BITS:
            raise WorkloadError(f"model {self.name!r}: weight_dtype = {self.weight_dtype!r}: "
                                f"expected one of {', '.join(DTYPES)}")
        if self.n_experts and not (1 <= self.top_k <= self.n_experts and self.d_ff_expert
                                   and self.activation in GATED):
            raise WorkloadError(f"model {self.name!r}: n_experts = {self.n_experts}: expected "
                                f"1 <= top_k ({self.top_k}) <= n_experts, d_ff_expert >= 1 and "
                                "a gated activation (swiglu or geglu)")
        if not self.n_experts and (self.top_k or self.d_ff_expert or self.d_ff_shared
                                   or self.dense_layers or self.router_bias
                                   or self.sigmoid_router):
            raise WorkloadError(f"model {self.name!r}: expert settings without n_experts")
        if self.kv_lora_rank and not (self.positions == "rotary" and self.v_head_dim
                                      and 0 < self.rotary_dims < self.d_head
                                      and self.arch == "decoder" and not self.sliding_window):
            raise WorkloadError(f"model {self.name!r}: kv_lora_rank = {self.kv_lora_rank}: "
                                "multi-head latent attention expects a rotary decoder without "
                                "a window, v_head_dim >= 1 and 0 < rotary_dims < d_head")
        if (self.q_lora_rank or self.v_head_dim) and not self.kv_lora_rank:
            raise WorkloadError(f"model {self.name!r}: q_lora_rank and v_head_dim are "
                                "settings of multi-head latent attention (kv_lora_rank)")
        if self.global_every and not self.sliding_window:
            raise WorkloadError(f"model {self.name!r}: global_every = {self.global_every} "
                                "without a sliding_window")

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

    @property
    def mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2, V3)."""
        return self.kv_lora_rank > 0

    def window(self, layer: int) -> int:
        """Positions layer `layer` attends to; 0: every one."""
        if not self.sliding_window or (self.global_every
                                       and layer % self.global_every == self.global_every - 1):
            return 0
        return self.sliding_window

    def moe(self, layer: int) -> bool:
        """Whether layer `layer`'s FFN is a mixture of experts."""
        return self.n_experts > 0 and layer >= self.dense_layers

    @property
    def moe_layers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n_layers) if self.moe(i))

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert (gate, up and down projections)."""
        return 3 * self.d_model * self.d_ff_expert

    @property
    def active_params(self) -> int:
        """Parameters a token's forward pass uses: all but the routed experts it is not sent
        to (the embedding table counted whole, as in the published figures)."""
        unused = (self.n_experts - self.top_k) * self.expert_params
        return self.n_params - unused * len(self.moe_layers)

    def kv_elements(self, layer: int) -> int:
        """KV cache elements per position and sequence of `layer` (all heads): K and V, or
        MLA's latent and its rotary key."""
        if self.mla:
            return self.kv_lora_rank + self.rotary_dims
        return 2 * self.n_kv_heads * self.d_head


def parameter_shapes(cfg: ModelConfig, tp: int = 1) -> dict[str, tuple[int, ...]]:
    """Every parameter tensor held by one device of `tp`, name -> shape (out, in).

    Megatron-style split: q/k/v, FFN up and gate by output rows (column-parallel), attention
    output and FFN down by input columns (row-parallel); their biases that follow the
    all-reduce, the norms, the embedding and position tables and the pooler are replicated.
    The untied LM head is split over the vocabulary (ceil(vocab / tp) rows per device).
    Experts split as Megatron does without expert parallelism: every device holds every
    expert, each cut like a dense FFN (gate and up by rows, down by columns); the router is
    replicated. MLA: the query and latent down-projections and their norms are replicated,
    the up-projections and the output split by heads.
    """
    d = cfg.d_model
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
        shapes.update(_mla_shapes(cfg, p, tp) if cfg.mla else _attention_shapes(cfg, p, tp))
        if cfg.sandwich_norms:
            shapes.update(_norm_shapes(cfg, p + "attn.post_norm"))
        if cfg.block != "parallel" or cfg.parallel_mlp_norm:
            shapes.update(_norm_shapes(cfg, p + "norm2"))
        if cfg.moe(i):
            shapes.update(_moe_shapes(cfg, p, tp))
        else:
            shapes.update(_mlp_shapes(cfg, p + "mlp.", cfg.d_ff // tp, cfg.mlp_bias))
        if cfg.sandwich_norms:
            shapes.update(_norm_shapes(cfg, p + "mlp.post_norm"))
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


def _attention_shapes(cfg: ModelConfig, p: str, tp: int) -> dict[str, tuple[int, ...]]:
    d, dh = cfg.d_model, cfg.d_head
    q_dim = cfg.n_heads * dh // tp
    kv_dim = cfg.n_kv_heads * dh // tp
    bias = cfg.attn_bias or cfg.qkv_bias
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.fused_qkv:
        shapes[p + "attn.qkv.weight"] = (q_dim + 2 * kv_dim, d)
        if bias:
            shapes[p + "attn.qkv.bias"] = (q_dim + 2 * kv_dim,)
    else:
        for proj, rows in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
            shapes[f"{p}attn.{proj}.weight"] = (rows, d)
            if bias:
                shapes[f"{p}attn.{proj}.bias"] = (rows,)
    shapes[p + "attn.out.weight"] = (d, q_dim)
    if cfg.attn_bias:
        shapes[p + "attn.out.bias"] = (d,)
    return shapes


def _mla_shapes(cfg: ModelConfig, p: str, tp: int) -> dict[str, tuple[int, ...]]:
    d, H = cfg.d_model, cfg.n_heads // tp
    rope, nope = cfg.rotary_dims, cfg.d_head - cfg.rotary_dims
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.q_lora_rank:
        shapes[p + "attn.q_down.weight"] = (cfg.q_lora_rank, d)
        shapes[p + "attn.q_norm.weight"] = (cfg.q_lora_rank,)
        shapes[p + "attn.q_up.weight"] = (H * cfg.d_head, cfg.q_lora_rank)
    else:
        shapes[p + "attn.q.weight"] = (H * cfg.d_head, d)
    shapes[p + "attn.kv_down.weight"] = (cfg.kv_lora_rank + rope, d)
    shapes[p + "attn.kv_norm.weight"] = (cfg.kv_lora_rank,)
    # HF's kv_b_proj, (H x (nope + v), kv_lora), as its key and value halves
    shapes[p + "attn.k_up.weight"] = (H * nope, cfg.kv_lora_rank)
    shapes[p + "attn.v_up.weight"] = (H * cfg.v_head_dim, cfg.kv_lora_rank)
    shapes[p + "attn.out.weight"] = (d, H * cfg.v_head_dim)
    return shapes


def _mlp_shapes(cfg: ModelConfig, p: str, ff: int, bias: bool) -> dict[str, tuple[int, ...]]:
    d = cfg.d_model
    shapes: dict[str, tuple[int, ...]] = {}
    projections = (("gate", (ff, d)),) if cfg.activation in GATED else ()
    for proj, shape in (*projections, ("up", (ff, d)), ("down", (d, ff))):
        shapes[f"{p}{proj}.weight"] = shape
        if bias:
            shapes[f"{p}{proj}.bias"] = (shape[0],)
    return shapes


def _moe_shapes(cfg: ModelConfig, p: str, tp: int) -> dict[str, tuple[int, ...]]:
    d = cfg.d_model
    shapes: dict[str, tuple[int, ...]] = {p + "moe.router.weight": (cfg.n_experts, d)}
    if cfg.router_bias:
        shapes[p + "moe.router.bias"] = (cfg.n_experts,)
    for e in range(cfg.n_experts):
        shapes.update(_mlp_shapes(cfg, f"{p}moe.e{e}.", cfg.d_ff_expert // tp, False))
    if cfg.d_ff_shared:
        shapes.update(_mlp_shapes(cfg, p + "moe.shared.", cfg.d_ff_shared // tp, False))
    if cfg.shared_gate:
        shapes[p + "moe.shared_gate.weight"] = (1, d)
    return shapes


def _norm_shapes(cfg: ModelConfig, prefix: str) -> dict[str, tuple[int, ...]]:
    if cfg.norm == "layernorm":
        return {prefix + ".weight": (cfg.d_model,), prefix + ".bias": (cfg.d_model,)}
    return {prefix + ".weight": (cfg.d_model,)}


@dataclass(frozen=True, slots=True)
class Precision:
    """Storage dtype per tensor class; each one of sim.opgraph.DTYPES. `embeddings`: the
    dtype of EMBEDDING_WEIGHTS and of 1-D weights (None: `weights`'), for a quantized
    checkpoint that keeps its embedding table, LM head, norms and biases in 16 bits."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv_cache: str = "bf16"
    embeddings: str | None = None

    def __post_init__(self) -> None:
        for key in ("weights", "activations", "kv_cache", "embeddings"):
            value = getattr(self, key)
            if value not in DTYPE_BITS and not (key == "embeddings" and value is None):
                raise WorkloadError(f"precision {key} = {value!r}: expected one of "
                                    f"{', '.join(DTYPES)}")

    @classmethod
    def uniform(cls, dtype: str) -> Precision:
        return cls(dtype, dtype, dtype)

    def of_weight(self, name: str, shape: tuple[int, ...]) -> str:
        """The stored dtype of weight `name` of `shape`: `embeddings` for the tables and LM
        head and for vectors (norms, biases), which a quantized checkpoint keeps in 16 bits,
        when it is set; else `weights`."""
        if self.embeddings is not None and (name in EMBEDDING_WEIGHTS or len(shape) == 1):
            return self.embeddings
        return self.weights

    def as_dict(self) -> dict[str, str]:
        """weights, activations, kv_cache (and embeddings when it differs from weights)."""
        out = {"weights": self.weights, "activations": self.activations,
               "kv_cache": self.kv_cache}
        if self.embeddings is not None and self.embeddings != self.weights:
            out["embeddings"] = self.embeddings
        return out


def tensor_bytes(shape: tuple[int, ...], dtype: str, group: int = INT4_GROUP,
                 group_bits: int = INT4_GROUP_BITS) -> int:
    """Bytes of a tensor of `shape` stored as `dtype`, int4 group scales included (`group`
    elements per group along the last dimension, 0 for one group per row; `group_bits` of
    scale and zero point per group)."""
    n = math.prod(shape)
    if dtype != "int4":
        return n * DTYPE_BITS[dtype] // 8
    cols = shape[-1] if shape else 1  # packed and grouped along the last dimension, per row
    rows = n // cols if cols else 0
    groups = -(-cols // group) if group else 1
    return rows * (-(-cols // 2)) + -(-rows * groups * group_bits // 8)


def weight_bytes(cfg: ModelConfig, shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of a weight of `shape` stored as `dtype` by model `cfg` (its int4 groups)."""
    return tensor_bytes(shape, dtype, cfg.quant_group, cfg.quant_group_bits)


def compute_dtype(a: str, b: str) -> str:
    """A matmul's compute precision: the wider operand dtype; on a tie, `a`'s."""
    return b if DTYPE_BITS[b] > DTYPE_BITS[a] else a
