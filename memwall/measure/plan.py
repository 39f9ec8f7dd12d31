"""What `memwall measure` times, in the order it times it: working-set sizes, GEMM shapes
(the bundled presets' weight matrices), the model runs, and the L2-resident model.

Everything here is a pure function of the device's figures, so tests can check the plan
without a GPU. Orders put the figures a hierarchy needs first, so a budget that runs out
still leaves a usable sweep.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import workloads
from workloads import ModelConfig, parameter_shapes

MiB, GiB = 2**20, 2**30
GEMM_PRESETS = ("gpt2", "llama2-7b", "llama3-8b")
MODEL_PRESETS = ("gpt2", "llama2-7b", "llama3-8b")
GEMM_DTYPES = ("bf16", "fp8", "fp16", "fp32")
#: rows of each GEMM: the plateau and the GEMV end first, then the wave-quantized middle
#: (192 and 640 are no multiple of 128, which tells 64 x 256 tiles from 128 x 128)
GEMM_M = (4096, 1, 1024, 128, 16, 2048, 512, 256, 64, 192, 640, 32, 8, 4, 2)
GEMM_M_FP32 = (4096, 1, 1024, 64)  # fp32 is slow and only sets the fp32 peak
DECODE_BATCH = (1, 8, 64)
DECODE_KV = (128, 1024, 4096)
PREFILL = ((1, 128), (1, 512), (1, 2048), (8, 128), (8, 512), (8, 2048))  # (batch, prompt)
PROFILE = (1, 1024)  # (batch, positions cached) of the decode step profiled kernel by kernel
RESIDENT_SHARE = 0.45  # the L2-resident model's weights: at most this share of the L2 knee
TWIN_FACTOR = 16  # its HBM twin streams at least this many times the knee per step


def stream_sizes(memory_bytes: int, top: int = 4 * GiB) -> list[int]:
    """Working sets from 1 MiB to `top` (at most an eighth of the device's memory), two per
    doubling (x sqrt 2), rounded to 4 KiB."""
    top = min(top, memory_bytes // 8)
    sizes, s = [], float(MiB)
    while s <= top * 1.0001:
        sizes.append(int(round(s / 4096)) * 4096)
        s *= math.sqrt(2)
    return sizes


def chase_sizes(memory_bytes: int, top: int = GiB) -> list[int]:
    """Pointer-chase working sets from 4 KiB to `top` (at most a sixteenth of memory), x2,
    coarse to fine (every fourth, then the halves between, then the rest), so a budget that
    stops the chase early still leaves a latency for every level."""
    top = min(top, memory_bytes // 16)
    sizes = [2**e for e in range(12, 31) if 2**e <= top]
    return [s for step in (4, 2, 1) for i, s in enumerate(sizes)
            if i % step == 0 and (step == 4 or i % (2 * step))]


def gemm_shapes(presets: tuple[str, ...] = GEMM_PRESETS) -> list[tuple[int, int]]:
    """Distinct (N, K) of the weight matrices of `presets`: projections and the LM head (a
    tied head reads the embedding table, so it counts as one), in first-seen order."""
    out: list[tuple[int, int]] = []
    for name in presets:
        m = workloads.preset(name)
        for key, shape in parameter_shapes(m).items():
            head = key == "lm_head.weight" or (key == "embed.weight" and m.tied_embeddings)
            if len(shape) == 2 and (head or "embed" not in key) and shape not in out:
                out.append(shape)
    return out


def gemm_plan(shapes: list[tuple[int, int]], dtypes: tuple[str, ...] = GEMM_DTYPES
              ) -> list[tuple[str, int, int, int]]:
    """(dtype, M, N, K) in timing order: dtype by dtype, the M order of GEMM_M."""
    return [(d, m, n, k) for d in dtypes for m in (GEMM_M_FP32 if d == "fp32" else GEMM_M)
            for n, k in shapes]


@dataclass(frozen=True)
class ModelRun:
    """One timed model run and the memwall run it is compared with."""

    model: ModelConfig  # as timed (max_positions extended where the run needs it)
    workload: str  # preset name or config.json file name, as models.csv names it
    layers: int | None  # models.csv `layers`: the workload with this many layers
    phase: str  # decode or prefill
    batch: int
    length: int  # decode: positions already cached; prefill: prompt tokens
    graph: bool  # decode replayed from a CUDA graph
    max_positions: int | None = None  # the learned position table extended to this

    @property
    def name(self) -> str:
        """The model as measurements.csv and models.csv ids name it: "llama2-7b",
        "l2_resident", "l2_resident-60l" (its twin of 60 layers)."""
        base = self.workload.removesuffix(".json")
        return f"{base}-{self.layers}l" if self.layers else base


def resident_config(knee_bytes: float, dtype_bytes: int = 2) -> ModelConfig:
    """A llama-shaped model whose weights fit in RESIDENT_SHARE of the L2 knee: the widest
    of d_model 1024, 768, 512, 384, 256 with one layer that fits, then as many layers as fit.
    Vocabulary 2048, so the LM head stays small too."""
    budget = RESIDENT_SHARE * knee_bytes
    for d in (1024, 768, 512, 384, 256):
        cfg = _small(d, 1)
        if cfg.n_params * dtype_bytes <= budget:
            layer = _small(d, 2).n_params - cfg.n_params
            extra = int((budget - cfg.n_params * dtype_bytes) // (layer * dtype_bytes))
            return _small(d, 1 + extra)
    return _small(256, 1)


def twin_layers(resident: ModelConfig, knee_bytes: float, dtype_bytes: int = 2) -> int:
    """Layers of the resident model's twin, whose weights are TWIN_FACTOR x the knee."""
    layer = (_small(resident.d_model, 2).n_params - _small(resident.d_model, 1).n_params)
    return max(resident.n_layers + 1, math.ceil(TWIN_FACTOR * knee_bytes / (layer * dtype_bytes)))


def _small(d: int, layers: int) -> ModelConfig:
    return ModelConfig(name="l2_resident", arch="decoder", n_layers=layers, d_model=d,
                       n_heads=d // 128 or 1, n_kv_heads=d // 128 or 1,
                       d_head=128 if d >= 128 else d, d_ff=d * 8 // 3 // 64 * 64, vocab=2048,
                       max_positions=8192, activation="swiglu", norm="rmsnorm",
                       positions="rotary", tied_embeddings=False, attn_bias=False,
                       mlp_bias=False)


def hf_config(cfg: ModelConfig) -> dict[str, object]:
    """`cfg` (llama-shaped) as a Hugging Face config.json, which workloads reads back."""
    return {"model_type": "llama", "hidden_size": cfg.d_model,
            "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
            "head_dim": cfg.d_head, "intermediate_size": cfg.d_ff, "vocab_size": cfg.vocab,
            "max_position_embeddings": cfg.max_positions, "num_hidden_layers": cfg.n_layers,
            "hidden_act": "silu", "tie_word_embeddings": False}


def model_runs(models: list[tuple[ModelConfig, str, int | None]]) -> list[ModelRun]:
    """The decode and prefill runs of each (model, workload name, layers): decode at every
    DECODE_BATCH x DECODE_KV, eager then graph; prefills within the model's positions."""
    runs = []
    for model, workload, layers in models:
        for batch in DECODE_BATCH:
            for kv in DECODE_KV:
                m = with_positions(model, kv + 1)
                extended = m.max_positions if m is not model else None
                runs += [ModelRun(m, workload, layers, "decode", batch, kv, g, extended)
                         for g in (False, True)]
        runs += [ModelRun(model, workload, layers, "prefill", b, p, False)
                 for b, p in PREFILL if p <= model.max_positions]
    return runs


def with_positions(model: ModelConfig, n: int) -> ModelConfig:
    """`model`, its learned position table extended to `n` rows if shorter."""
    if model.positions == "learned" and model.max_positions < n:
        return dataclasses.replace(model, max_positions=n)
    return model


def run_bytes(run: ModelRun, dtype_bytes: int = 2) -> int:
    """Device memory a run needs: weights, the KV cache, and the largest activation (the
    attention scores of a prefill, or the logits), in bf16."""
    m = run.model
    tokens = run.length + 1 if run.phase == "decode" else run.length
    kv = 2 * m.n_layers * run.batch * tokens * m.n_kv_heads * m.d_head * dtype_bytes
    rows = 1 if run.phase == "decode" else run.length
    scores = run.batch * m.n_heads * rows * tokens * 4  # fp32 softmax
    logits = run.batch * m.vocab * 4
    return m.n_params * dtype_bytes + kv + 2 * max(scores, logits)
