"""Named models, one line each with its parameter count (nanoGPT `from_pretrained` style).

Sources: GPT-2 and BERT Hugging Face configs; GPT-3 paper (Brown et al. 2020) Table 2.1 with
GPT-2 blocks, d_ff = 4 d_model, vocab 50257, context 2048 (its alternating sparse attention
layers are modelled dense). Table 2.1 is inconsistent for two rows (n_heads * d_head !=
d_model); GPT-2 blocks need them equal, so gpt3-1.3b uses 16 heads of 128 (as GPT-Neo 1.3B)
instead of 24, and gpt3-13b d_model 5120 (= 40 x 128) instead of 5140.
GPT-J, Llama 2, Llama 3 and Mistral Hugging Face configs (Mistral's 4096-position sliding
window is not modelled). Counts in the comments are `ModelConfig.n_params`; the published
ones are tested in tests/test_presets.py. GPT-J's often-quoted 6,053,381,344 is the 8-shard
mesh-transformer-jax count: it adds 7 extra copies of every LayerNorm and fc_out bias and
8 copies of a 4096-element input-embedding bias (2,498,560 in all) to the 6,050,882,784 of
the Hugging Face shapes used here.
"""

from __future__ import annotations

from pathlib import Path

from workloads.hf_config import from_hf_config
from workloads.model import ModelConfig, WorkloadError

_GPT2 = dict(arch="decoder", activation="gelu", norm="layernorm", positions="learned",
             tied_embeddings=True, attn_bias=True, mlp_bias=True, fused_qkv=True)
_BERT = dict(arch="encoder", activation="gelu", norm="layernorm", positions="learned",
             tied_embeddings=False, attn_bias=True, mlp_bias=True, block="post_norm",
             final_norm=False, embed_norm=True, type_vocab=2, pooler=True)
_LLAMA = dict(arch="decoder", activation="swiglu", norm="rmsnorm", positions="rotary",
              tied_embeddings=False, attn_bias=False, mlp_bias=False)
_GPTJ = dict(arch="decoder", activation="gelu", norm="layernorm", positions="rotary",
             tied_embeddings=False, attn_bias=False, mlp_bias=True, block="parallel",
             rotary_dims=64, lm_head_bias=True)


def _model(name: str, family: dict[str, object], n_layers: int, d_model: int, n_heads: int,
           n_kv_heads: int, d_head: int, d_ff: int, vocab: int, max_positions: int) -> ModelConfig:
    shape = dict(n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
                 d_head=d_head, d_ff=d_ff, vocab=vocab, max_positions=max_positions)
    return ModelConfig(name=name, **{**family, **shape})  # type: ignore[arg-type]


# fmt: off
_TABLE: tuple[tuple, ...] = (
    # name          family   L d_model   H  KV d_head d_ff   vocab positions  # params
    ("gpt2",        _GPT2,  12,   768, 12, 12,  64,  3072,  50257,  1024),  # 124,439,808
    ("gpt2-medium", _GPT2,  24,  1024, 16, 16,  64,  4096,  50257,  1024),  # 354,823,168
    ("gpt2-large",  _GPT2,  36,  1280, 20, 20,  64,  5120,  50257,  1024),  # 774,030,080
    ("gpt2-xl",     _GPT2,  48,  1600, 25, 25,  64,  6400,  50257,  1024),  # 1,557,611,200
    ("bert-base",   _BERT,  12,   768, 12, 12,  64,  3072,  30522,   512),  # 109,482,240
    ("bert-large",  _BERT,  24,  1024, 16, 16,  64,  4096,  30522,   512),  # 335,141,888
    ("gpt3-125m",   _GPT2,  12,   768, 12, 12,  64,  3072,  50257,  2048),  # 125,226,240
    ("gpt3-350m",   _GPT2,  24,  1024, 16, 16,  64,  4096,  50257,  2048),  # 355,871,744
    ("gpt3-760m",   _GPT2,  24,  1536, 16, 16,  96,  6144,  50257,  2048),  # 760,300,032
    ("gpt3-1.3b",   _GPT2,  24,  2048, 16, 16, 128,  8192,  50257,  2048),  # 1,315,723,264
    ("gpt3-2.7b",   _GPT2,  32,  2560, 32, 32,  80, 10240,  50257,  2048),  # 2,651,553,280
    ("gpt3-6.7b",   _GPT2,  32,  4096, 32, 32, 128, 16384,  50257,  2048),  # 6,658,404,352
    ("gpt3-13b",    _GPT2,  40,  5120, 40, 40, 128, 20480,  50257,  2048),  # 12,853,386,240
    ("gpt3-175b",   _GPT2,  96, 12288, 96, 96, 128, 49152,  50257,  2048),  # 174,604,259,328
    ("gpt-j-6b",    _GPTJ,  28,  4096, 16, 16, 256, 16384,  50400,  2048),  # 6,050,882,784
    ("llama2-7b",   _LLAMA, 32,  4096, 32, 32, 128, 11008,  32000,  4096),  # 6,738,415,616
    ("llama2-13b",  _LLAMA, 40,  5120, 40, 40, 128, 13824,  32000,  4096),  # 13,015,864,320
    ("llama2-70b",  _LLAMA, 80,  8192, 64,  8, 128, 28672,  32000,  4096),  # 68,976,648,192
    ("llama3-8b",   _LLAMA, 32,  4096, 32,  8, 128, 14336, 128256,  8192),  # 8,030,261,248
    ("llama3-70b",  _LLAMA, 80,  8192, 64,  8, 128, 28672, 128256,  8192),  # 70,553,706,496
    ("mistral-7b",  _LLAMA, 32,  4096, 32,  8, 128, 14336,  32000, 32768),  # 7,241,732,096
)
# fmt: on

PRESETS: dict[str, ModelConfig] = {row[0]: _model(*row) for row in _TABLE}


def load_workload(workload: str) -> ModelConfig:
    """`--workload`: a preset name, or a path to a Hugging Face config.json (read offline)."""
    if workload in PRESETS:
        return PRESETS[workload]
    if workload.endswith(".json") or Path(workload).is_file():
        return from_hf_config(workload)
    return preset(workload)


def preset(name: str) -> ModelConfig:
    """The preset called `name`, or a WorkloadError naming the choices."""
    if name not in PRESETS:
        raise WorkloadError(f"unknown workload {name!r}: expected one of {', '.join(PRESETS)} "
                            "or a path to a Hugging Face config.json")
    return PRESETS[name]
