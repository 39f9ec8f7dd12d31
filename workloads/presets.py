"""Named models, one line each with its parameter count (nanoGPT `from_pretrained` style).

Sources: GPT-2 and BERT Hugging Face configs; GPT-3 paper (Brown et al. 2020) Table 2.1 with
GPT-2 blocks, d_ff = 4 d_model, vocab 50257, context 2048 (its alternating sparse attention
layers are modelled dense). Table 2.1 is inconsistent for two rows (n_heads * d_head !=
d_model); GPT-2 blocks need them equal, so gpt3-1.3b uses 16 heads of 128 (as GPT-Neo 1.3B)
instead of 24, and gpt3-13b d_model 5120 (= 40 x 128) instead of 5140.
GPT-J, Llama 2, Llama 3, Mistral (v0.1, its 4096-position sliding window on every layer),
and the Hugging Face configs of meta-llama/Llama-3.1-{8B,70B,405B}, Qwen/Qwen2.5-{7B,72B},
mistralai/Mixtral-8x7B-v0.1 and Mixtral-8x22B-v0.1, deepseek-ai/DeepSeek-V2-Lite and
DeepSeek-V3 (its fp8 checkpoint: quantization_config fp8, the embedding and LM head bf16),
google/gemma-2-9b, microsoft/Phi-3-mini-4k-instruct (sliding window 2047), tiiuae/falcon-7b
and falcon-180B,
EleutherAI/gpt-neox-20b and Qwen/Qwen1.5-MoE-A2.7B (model_type qwen2_moe). Counts in the
comments are `ModelConfig.n_params` (mixtures of experts: total, and active per token); the
published ones, with sources, are tested in tests/test_presets.py. GPT-J's often-quoted
6,053,381,344 is the 8-shard mesh-transformer-jax count: it adds 7 extra copies of every
LayerNorm and fc_out bias and 8 copies of a 4096-element input-embedding bias (2,498,560 in
all) to the 6,050,882,784 of the Hugging Face shapes used here. Falcon-7B ties its LM head
to the embedding (FalconForCausalLM), though its checkpoint stores the table twice, so the
Hub's 7,217,189,760 counts 295,469,056 parameters twice; the shapes give 6,921,720,704 (and
Falcon-180B's 179,522,565,120 counts 965,476,352 twice: 178,557,088,768).
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
_MISTRAL = dict(_LLAMA, sliding_window=4096)
_QWEN2 = dict(_LLAMA, qkv_bias=True)
_PHI3 = dict(_LLAMA, fused_qkv=True, sliding_window=2047)
_GEMMA2 = dict(arch="decoder", activation="geglu", norm="rmsnorm", positions="rotary",
               tied_embeddings=True, attn_bias=False, mlp_bias=False, embed_scale=True,
               sandwich_norms=True, attn_softcap=True, logit_softcap=True, sliding_window=4096,
               global_every=2)
_FALCON = dict(arch="decoder", activation="gelu", norm="layernorm", positions="rotary",
               tied_embeddings=True, attn_bias=False, mlp_bias=False, fused_qkv=True,
               block="parallel")
_FALCON180 = dict(_FALCON, parallel_mlp_norm=True)  # new_decoder_architecture: ln_attn, ln_mlp
_NEOX = dict(arch="decoder", activation="gelu", norm="layernorm", positions="rotary",
             tied_embeddings=False, attn_bias=True, mlp_bias=True, fused_qkv=True,
             block="parallel", parallel_mlp_norm=True)
_DEEPSEEK = dict(_LLAMA, rotary_dims=64, kv_lora_rank=512, v_head_dim=128)
# per-row extras: experts (E, top_k, d_ff_expert[, d_ff_shared]) and the rest
_X8_2 = dict(n_experts=8, top_k=2)


def _model(name: str, family: dict[str, object], n_layers: int, d_model: int, n_heads: int,
           n_kv_heads: int, d_head: int, d_ff: int, vocab: int, max_positions: int,
           extra: dict[str, object] | None = None) -> ModelConfig:
    shape = dict(n_layers=n_layers, d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads,
                 d_head=d_head, d_ff=d_ff, vocab=vocab, max_positions=max_positions)
    return ModelConfig(name=name, **{**family, **shape, **(extra or {})})  # type: ignore[arg-type]


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
    ("mistral-7b",  _MISTRAL, 32, 4096, 32, 8, 128, 14336,  32000, 32768),  # 7,241,732,096
    ("llama3.1-8b",   _LLAMA,  32,  4096,  32,   8, 128, 14336, 128256, 131072),  # 8,030,261,248
    ("llama3.1-70b",  _LLAMA,  80,  8192,  64,   8, 128, 28672, 128256, 131072),  # 70,553,706,496
    ("llama3.1-405b", _LLAMA, 126, 16384, 128,   8, 128, 53248, 128256, 131072),  # 405,853,388,800
    ("qwen2.5-7b",    _QWEN2,  28,  3584,  28,   4, 128, 18944, 152064, 131072),  # 7,615,616,512
    ("qwen2.5-72b",   _QWEN2,  80,  8192,  64,   8, 128, 29568, 152064, 131072),  # 72,706,203,648
    ("gemma2-9b",     _GEMMA2, 42,  3584,  16,   8, 256, 14336, 256000,   8192),  # 9,241,705,984
    ("phi3-mini",     _PHI3,   32,  3072,  32,  32,  96,  8192,  32064,   4096),  # 3,821,079,552
    ("falcon-7b",     _FALCON, 32,  4544,  71,   1,  64, 18176,  65024,   2048),  # 6,921,720,704
    ("falcon-180b",   _FALCON180, 80, 14848, 232, 8, 64, 59392, 65024,  2048),  # 178,557,088,768
    ("gpt-neox-20b",  _NEOX,   44,  6144,  64,  64,  96, 24576,  50432,   2048,   # 20,554,567,680
     dict(rotary_dims=24)),
    # mixtures of experts                                                    total; active
    ("mixtral-8x7b",  _LLAMA,  32,  4096,  32,   8, 128, 14336,  32000,  32768,   # 46,702,792,704
     dict(_X8_2, d_ff_expert=14336)),                                           # 12,879,925,248
    ("mixtral-8x22b", _LLAMA,  56,  6144,  48,   8, 128, 16384,  32000,  65536,   # 140,620,634,112
     dict(_X8_2, d_ff_expert=16384)),                                           # 39,152,031,744
    ("qwen1.5-moe-a2.7b", _QWEN2, 24, 2048, 16, 16, 128,  5632, 151936,   8192,   # 14,315,784,192
     dict(n_experts=60, top_k=4, d_ff_expert=1408, d_ff_shared=5632,            # 2,689,173,504
          shared_gate=True)),
    ("deepseek-v2-lite", _DEEPSEEK, 27, 2048, 16, 16, 192, 10944, 102400, 163840,  # 15,706,484,224
     dict(n_experts=64, top_k=6, d_ff_expert=1408, d_ff_shared=2816,            # 2,661,150,208
          dense_layers=1)),
    ("deepseek-v3", _DEEPSEEK, 61, 7168, 128, 128, 192, 18432, 129280, 163840,  # 671,026,419,200
     dict(q_lora_rank=1536, n_experts=256, top_k=8, d_ff_expert=2048,            # 37,552,297,472
          d_ff_shared=2048, dense_layers=3, router_bias=True, sigmoid_router=True,
          weight_dtype="fp8")),
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
