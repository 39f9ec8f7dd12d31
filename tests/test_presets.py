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
         "llama2-13b llama2-70b llama3-8b llama3-70b mistral-7b").split()

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
}


def test_exact_names() -> None:
    assert tuple(PRESETS) == tuple(NAMES)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_count(name: str) -> None:
    assert PRESETS[name].n_params == PUBLISHED[name]


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
        assert m.n_heads * m.d_head == m.d_model
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
