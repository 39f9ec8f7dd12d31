"""Presets: names, published parameter counts, the bytes rule and precision."""

from __future__ import annotations

import math

import pytest

from workloads import (
    PRESETS,
    ModelConfig,
    Precision,
    WorkloadError,
    compute_dtype,
    load_workload,
    parameter_shapes,
    preset,
    tensor_bytes,
)

NAMES = ("gpt2 gpt2-medium gpt2-large gpt2-xl bert-base bert-large gpt3-125m gpt3-350m "
         "gpt3-760m gpt3-1.3b gpt3-2.7b gpt3-6.7b gpt3-13b gpt3-175b gpt-j-6b llama2-7b "
         "llama2-13b llama2-70b llama3-8b llama3-70b mistral-7b llama3.1-8b llama3.1-70b "
         "llama3.1-405b qwen2.5-7b qwen2.5-72b gemma2-9b phi3-mini falcon-7b falcon-180b "
         "gpt-neox-20b "
         "mixtral-8x7b mixtral-8x22b qwen1.5-moe-a2.7b deepseek-v2-lite deepseek-v3").split()

PUBLISHED = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "bert-base": 109_482_240,  # BertModel, pooler included
    "bert-large": 335_141_888,
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "gpt-j-6b": 6_050_882_784,  # Hugging Face GPTJForCausalLM
    # Hugging Face Hub, safetensors parameter totals of the checkpoints (the model pages'
    # "Model size", api/models/<repo> safetensors.total), unless a note says otherwise
    "llama3.1-8b": 8_030_261_248,  # meta-llama/Llama-3.1-8B
    "llama3.1-70b": 70_553_706_496,  # meta-llama/Llama-3.1-70B
    "llama3.1-405b": 405_853_388_800,  # meta-llama/Llama-3.1-405B
    "qwen2.5-7b": 7_615_616_512,  # Qwen/Qwen2.5-7B
    "qwen2.5-72b": 72_706_203_648,  # Qwen/Qwen2.5-72B
    "gemma2-9b": 9_241_705_984,  # google/gemma-2-9b
    "phi3-mini": 3_821_079_552,  # microsoft/Phi-3-mini-4k-instruct
    # tiiuae/falcon-7b: the Hub's 7,217,189,760 counts the tied LM head, which the
    # checkpoint stores, a second time (see test_falcon_hub_count); TII: "7B parameters"
    "falcon-7b": 6_921_720_704,
    "falcon-180b": 178_557_088_768,  # tiiuae/falcon-180B: the Hub's 179,522,565,120 likewise
    "gpt-neox-20b": 20_554_567_680,  # EleutherAI/gpt-neox-20b model card, n_parameters
    "mixtral-8x7b": 46_702_792_704,  # mistralai/Mixtral-8x7B-v0.1
    "mixtral-8x22b": 140_620_634_112,  # mistralai/Mixtral-8x22B-v0.1 (vocab 32000)
    "qwen1.5-moe-a2.7b": 14_315_784_192,  # Qwen/Qwen1.5-MoE-A2.7B
    "deepseek-v2-lite": 15_706_484_224,  # deepseek-ai/DeepSeek-V2-Lite ("15.7B")
    # deepseek-ai/DeepSeek-V3 README_WEIGHTS.md: 671B main-model weights plus 14B of the
    # multi-token-prediction module (not run, not counted); the main-model tensors of the
    # checkpoint hold 671,026,419,200 parameters (fp8 block scales excluded)
    "deepseek-v3": 671_026_419_200,
}
# Active parameters per token as published, and the counting convention that matches them
# (ModelConfig.active_params counts every weight but the experts a token skips; DeepSeek
# leaves the input embedding out): (billions, relative tolerance of the rounded figure)
ACTIVE = {
    "mixtral-8x7b": (12.9, 0.005, 0),  # Mistral AI, "Mixtral of experts": 12.9B active
    "qwen1.5-moe-a2.7b": (2.7, 0.01, 0),  # Qwen: "2.7B activated parameters"
    "deepseek-v2-lite": (2.4, 0.03, 1),  # model card: 2.4B activated (embedding not counted)
    "deepseek-v3": (37.0, 0.02, 1),  # technical report: 37B activated per token
}


def test_exact_names() -> None:
    assert tuple(PRESETS) == tuple(NAMES)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_count(name: str) -> None:
    assert PRESETS[name].n_params == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_published_active_parameters(name: str) -> None:
    billions, rel, embedding_left_out = ACTIVE[name]
    m = PRESETS[name]
    active = m.active_params - embedding_left_out * m.vocab * m.d_model
    assert active == pytest.approx(billions * 1e9, rel=rel)
    assert m.n_params - m.active_params == (
        (m.n_experts - m.top_k) * 3 * m.d_model * m.d_ff_expert * len(m.moe_layers))


def test_falcon_hub_count() -> None:
    m = PRESETS["falcon-7b"]
    assert m.tied_embeddings and m.n_params + m.vocab * m.d_model == 7_217_189_760
    m = PRESETS["falcon-180b"]
    assert m.tied_embeddings and m.n_params + m.vocab * m.d_model == 179_522_565_120


def test_dense_presets_have_no_inactive_parameters() -> None:
    for m in PRESETS.values():
        assert (m.active_params == m.n_params) == (m.n_experts == 0)


def test_gptj_mesh_transformer_jax_count() -> None:
    # The 6,053,381,344 quoted by EleutherAI: 8 shards, each with its own copy of every
    # LayerNorm (ln_1 per layer, ln_f) and fc_out bias, plus an input-embedding bias.
    m = PRESETS["gpt-j-6b"]
    d = m.d_model
    extra = 7 * (2 * d + d) * m.n_layers + 7 * 2 * d + 8 * d
    assert m.n_params + extra == 6_053_381_344


@pytest.mark.parametrize("name,billions", [
    ("gpt3-125m", 0.125), ("gpt3-350m", 0.35), ("gpt3-760m", 0.76), ("gpt3-1.3b", 1.3),
    ("gpt3-2.7b", 2.7), ("gpt3-6.7b", 6.7), ("gpt3-13b", 13.0), ("gpt3-175b", 175.0),
])
def test_gpt3_table_2_1(name: str, billions: float) -> None:
    m = PRESETS[name]
    assert m.n_params == pytest.approx(billions * 1e9, rel=0.03)
    assert (m.vocab, m.max_positions, m.d_ff) == (50257, 2048, 4 * m.d_model)
    assert m.tied_embeddings and m.positions == "learned" and m.activation == "gelu"


def test_shapes_of_families() -> None:
    for m in PRESETS.values():
        # Gemma 2 (16 x 256 > 3584) and MLA's query/key heads (nope + rope) are wider
        assert m.n_heads * m.d_head == m.d_model or m.name in ("gemma2-9b", "deepseek-v2-lite",
                                                                "deepseek-v3")
        assert m.n_params == sum(math.prod(s) for s in parameter_shapes(m).values())
    assert PRESETS["llama2-70b"].n_kv_heads == 8 and PRESETS["mistral-7b"].n_kv_heads == 8
    assert PRESETS["llama2-7b"].n_kv_heads == 32
    gptj = PRESETS["gpt-j-6b"]
    assert (gptj.block, gptj.rotated_dims, gptj.lm_head_bias, gptj.tied_embeddings) == (
        "parallel", 64, True, False)
    bert = PRESETS["bert-base"]
    assert (bert.arch, bert.pooler, bert.block) == ("encoder", True, "post_norm")


def test_tensor_parallel_shapes_split_the_layers() -> None:
    m = PRESETS["llama2-70b"]
    one = sum(math.prod(s) for s in parameter_shapes(m, 1).values())
    eight = sum(math.prod(s) for s in parameter_shapes(m, 8).values())
    embed = m.vocab * m.d_model  # replicated
    assert eight == pytest.approx((one - embed) / 8 + embed, rel=1e-3)


def test_bytes_rule() -> None:
    assert tensor_bytes((3, 5), "fp32") == 60
    assert tensor_bytes((3, 5), "bf16") == tensor_bytes((3, 5), "fp16") == 30
    assert tensor_bytes((3, 5), "int8") == tensor_bytes((3, 5), "fp8") == 15
    # int4: half a byte per element + (bf16 scale + bf16 zero) per 32 elements of a row
    assert tensor_bytes((1, 32), "int4") == 16 + 4
    assert tensor_bytes((4096, 4096), "int4") == 4096 * 4096 // 2 + 4096 * 128 * 4
    assert tensor_bytes((2, 33), "int4") == 2 * (17 + 2 * 4)  # rows pack and group apart


def test_compute_dtype_is_the_wider_operand() -> None:
    assert compute_dtype("bf16", "int8") == "bf16"  # weight-only int8
    assert compute_dtype("int8", "int4") == "int8"
    assert compute_dtype("int8", "int8") == "int8"
    assert compute_dtype("fp8", "fp32") == "fp32"


def test_precision_errors() -> None:
    assert Precision() == Precision("bf16", "bf16", "bf16")
    assert Precision.uniform("int8").kv_cache == "int8"
    with pytest.raises(WorkloadError, match="kv_cache = 'int3'"):
        Precision(kv_cache="int3")


def test_model_config_errors() -> None:
    base = PRESETS["llama2-7b"]
    kw = {f: getattr(base, f) for f in ModelConfig.__dataclass_fields__}
    with pytest.raises(WorkloadError, match="n_kv_heads = 5"):
        ModelConfig(**{**kw, "n_kv_heads": 5})
    with pytest.raises(WorkloadError, match="d_model = 0"):
        ModelConfig(**{**kw, "d_model": 0})


def test_load_workload_by_name() -> None:
    assert load_workload("gpt2") is PRESETS["gpt2"]
    with pytest.raises(WorkloadError, match="unknown workload 'gpt5'"):
        preset("gpt5")
    with pytest.raises(WorkloadError, match="expected one of gpt2, "):
        load_workload("gpt5")
