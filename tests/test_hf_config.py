"""Hugging Face config.json import: one file per architecture, and the errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sim.errors import MemwallError
from workloads import (
    PRESETS,
    HFConfigError,
    RunSpec,
    build_phase,
    from_hf_config,
    load_workload,
    parse_hf_config,
)

CONFIGS = {  # trimmed copies of the Hugging Face Hub files, keys that matter plus some noise
    "gpt2": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
             "activation_function": "gelu_new", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
             "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
             "layer_norm_epsilon": 1e-05},
    "bert-base": {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 30522,
                  "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"},
    "llama2-7b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                  "num_attention_heads": 32, "num_hidden_layers": 32,
                  "num_key_value_heads": 32, "vocab_size": 32000,
                  "max_position_embeddings": 4096, "hidden_act": "silu",
                  "tie_word_embeddings": False, "rms_norm_eps": 1e-05},
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                   "num_attention_heads": 32, "num_hidden_layers": 32,
                   "num_key_value_heads": 8, "vocab_size": 32000,
                   "max_position_embeddings": 32768, "sliding_window": 4096,
                   "hidden_act": "silu", "tie_word_embeddings": False},
    "gpt-j-6b": {"model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_layer": 28,
                 "n_positions": 2048, "rotary_dim": 64, "vocab_size": 50400, "n_inner": None,
                 "activation_function": "gelu_new", "tie_word_embeddings": False},
}
OPT_125M = {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "ffn_dim": 3072, "vocab_size": 50272,
            "max_position_embeddings": 2048, "word_embed_proj_dim": 768,
            "do_layer_norm_before": True, "activation_function": "relu", "enable_bias": True}


def write(tmp_path: Path, raw: object, folder: str = "model") -> Path:
    path = tmp_path / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, indent=2) if not isinstance(raw, str) else raw)
    return path


@pytest.mark.parametrize("preset", list(CONFIGS))
def test_config_maps_to_the_preset(tmp_path: Path, preset: str) -> None:
    m = from_hf_config(write(tmp_path, CONFIGS[preset], folder=f"hub-{preset}"))
    assert m.name == f"hub-{preset}"
    assert dataclasses.replace(m, name=preset) == PRESETS[preset]


def test_opt_125m(tmp_path: Path) -> None:
    m = load_workload(str(write(tmp_path, OPT_125M, "opt-125m")))
    assert m.name == "opt-125m" and m.n_params == 125_239_296  # OPTForCausalLM
    assert (m.activation, m.tied_embeddings, m.pos_rows) == ("relu", True, 2050)
    build_phase(RunSpec(m, prompt_len=4, gen_len=2), 1)


def test_llama3_with_head_dim_and_tied_embeddings(tmp_path: Path) -> None:
    raw = dict(CONFIGS["llama2-7b"], num_key_value_heads=8, head_dim=128,
               tie_word_embeddings=True, vocab_size=128256)
    m = from_hf_config(write(tmp_path, raw))
    assert m.tied_embeddings and m.n_kv_heads == 8
    G = build_phase(RunSpec(m, prompt_len=3, gen_len=2), 1)
    assert G.nodes["lm_head"]["reads"][1].name == "embed.weight"


@pytest.mark.parametrize("raw,message", [
    ({"n_embd": 768}, r"missing key 'model_type': expected one of gpt2, bert, llama"),
    ({"model_type": "t5"}, r"key 'model_type' = 't5': expected one of gpt2, bert"),
    (dict(CONFIGS["gpt2"], n_head=0), r"key 'n_head' = 0: expected a positive int"),
    ({k: v for k, v in CONFIGS["bert-base"].items() if k != "intermediate_size"},
     r"missing key 'intermediate_size': expected a positive int for model_type 'bert'"),
    (dict(CONFIGS["gpt2"], n_head=7), r"key 'n_head' = 7: expected a divisor of n_embd = 768"),
    (dict(CONFIGS["llama2-7b"], hidden_act="gelu"),
     r"key 'hidden_act' = 'gelu': expected one of silu, swish"),
    (dict(CONFIGS["mistral-7b"], num_key_value_heads=5),
     r"key 'num_key_value_heads' = 5: expected a divisor of num_attention_heads = 32"),
    (dict(CONFIGS["gpt2"], tie_word_embeddings="yes"),
     r"key 'tie_word_embeddings' = 'yes': expected true or false"),
    (dict(OPT_125M, word_embed_proj_dim=512), r"key 'word_embed_proj_dim' = 512"),
    ([1, 2], r"top level is list: expected an object"),
])
def test_errors_name_file_key_value_and_expectation(tmp_path: Path, raw: object,
                                                    message: str) -> None:
    path = write(tmp_path, raw)
    with pytest.raises(HFConfigError, match=message) as err:
        from_hf_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert isinstance(err.value, MemwallError)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "model_type": "gpt2",\n  "n_layer": 12,,\n}\n')
    with pytest.raises(HFConfigError, match=rf"^{path}:3: invalid JSON"):
        load_workload(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HFConfigError, match="cannot read"):
        load_workload(str(tmp_path / "nope" / "config.json"))


# -- the published configs of today's families ---------------------------------------------
HUB = Path(__file__).resolve().parent / "hf_configs"  # sources: hf_configs/README.md
# file -> (preset it equals, or None; parameter count: the preset's published one, see
# test_presets.PUBLISHED, or for these two the Hub's safetensors total)
HUB_MODELS = {
    "Llama-3.1-8B": ("llama3.1-8b", 8_030_261_248),
    "Mistral-7B-v0.1": ("mistral-7b", 7_241_732_096),
    "opt-1.3b": (None, 1_315_758_080),  # facebook/opt-1.3b
    "Qwen2.5-7B": ("qwen2.5-7b", 7_615_616_512),
    "Mixtral-8x7B-v0.1": ("mixtral-8x7b", 46_702_792_704),
    "Phi-3-mini-4k-instruct": ("phi3-mini", 3_821_079_552),
    "gemma-2-9b": ("gemma2-9b", 9_241_705_984),
    "gemma-7b": (None, 8_537_680_896),  # google/gemma-7b
    "DeepSeek-V2-Lite": ("deepseek-v2-lite", 15_706_484_224),
    "DeepSeek-V3": ("deepseek-v3", 671_026_419_200),
    "falcon-7b": ("falcon-7b", 6_921_720_704),
    "gpt-neox-20b": ("gpt-neox-20b", 20_554_567_680),
    "Qwen1.5-MoE-A2.7B": ("qwen1.5-moe-a2.7b", 14_315_784_192),
}


def hub(name: str) -> dict:
    return json.loads((HUB / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(HUB_MODELS))
def test_every_published_config_loads(name: str) -> None:
    preset, count = HUB_MODELS[name]
    m = from_hf_config(HUB / f"{name}.json")
    assert m.name == "hf_configs" and m.n_params == count
    if preset is not None:
        assert dataclasses.replace(m, name=preset) == PRESETS[preset]
    spec = RunSpec(dataclasses.replace(m, n_layers=min(m.n_layers, 4)), prompt_len=3,
                   gen_len=2)
    build_phase(spec, 1)


def test_families_map_their_features() -> None:
    load = {n: from_hf_config(HUB / f"{n}.json") for n in HUB_MODELS}
    assert (load["Mistral-7B-v0.1"].sliding_window, load["Mixtral-8x7B-v0.1"].sliding_window,
            load["Phi-3-mini-4k-instruct"].sliding_window) == (4096, 0, 2047)
    g2 = load["gemma-2-9b"]
    assert (g2.window(0), g2.window(1), g2.sandwich_norms, g2.activation) == (
        4096, 0, True, "geglu")
    assert load["Qwen2.5-7B"].qkv_bias and not load["Qwen2.5-7B"].attn_bias
    assert (load["Qwen2.5-7B"].sliding_window, load["Qwen2.5-7B"].max_positions) == (0, 131072)
    falcon = load["falcon-7b"]
    assert (falcon.n_kv_heads, falcon.block, falcon.tied_embeddings, falcon.max_positions) == (
        1, "parallel", True, 2048)
    neox = load["gpt-neox-20b"]
    assert (neox.rotated_dims, neox.block, neox.parallel_mlp_norm) == (24, "parallel", True)
    v3 = load["DeepSeek-V3"]
    assert (v3.kv_lora_rank, v3.q_lora_rank, v3.rotary_dims, v3.dense_layers, v3.router_bias,
            v3.sigmoid_router, v3.weight_dtype) == (512, 1536, 64, 3, True, True, "fp8")
    lite = load["DeepSeek-V2-Lite"]
    assert (lite.q_lora_rank, lite.d_ff_shared, lite.router_bias, lite.sigmoid_router) == (
        0, 2 * 1408, False, False)
    route = build_phase(RunSpec(dataclasses.replace(v3, n_layers=4), prompt_len=2, gen_len=2),
                        1).nodes["h3.moe.route"]
    assert route["flops"] == 4 * 1 * 256  # a sigmoid per expert score
    q = load["Qwen1.5-MoE-A2.7B"]
    assert (q.n_experts, q.top_k, q.d_ff_shared, q.shared_gate) == (60, 4, 5632, True)


def test_awq_config_sets_int4_weights_with_its_groups() -> None:
    m = from_hf_config(HUB / "Meta-Llama-3.1-8B-Instruct-AWQ-INT4.json")
    assert (m.weight_dtype, m.quant_group, m.quant_group_bits) == ("int4", 128, 20)
    assert dataclasses.replace(m, name="llama3.1-8b", weight_dtype=None, quant_group=32,
                               quant_group_bits=32) == PRESETS["llama3.1-8b"]
    gptq = dict(hub("Llama-3.1-8B"), quantization_config={
        "bits": 4, "group_size": -1, "desc_act": False, "quant_method": "gptq"})
    assert parse_hf_config(json.dumps(gptq), "x", "x").quant_group == 0  # one group per row


UNSUPPORTED = [  # (config, changes, the key the error must name)
    ("Qwen2.5-7B", {"use_sliding_window": True}, "use_sliding_window"),
    ("Llama-3.1-8B", {"rope_scaling": {"rope_type": "wavelet", "factor": 2}},
     "rope_scaling.rope_type"),
    ("Phi-3-mini-4k-instruct", {"rope_scaling": {"type": "mystery"}}, "rope_scaling.type"),
    ("gemma-2-9b", {"layer_types": ["sliding_attention"] * 42}, "layer_types"),
    ("Mistral-7B-v0.1", {"layer_types": ["full_attention"] * 32}, "layer_types"),
    ("falcon-7b", {"alibi": True}, "alibi"),
    ("falcon-7b", {"apply_residual_connection_post_layernorm": True},
     "apply_residual_connection_post_layernorm"),
    ("DeepSeek-V3", {"moe_layer_freq": 2}, "moe_layer_freq"),
    ("DeepSeek-V2-Lite", {"attention_bias": True}, "attention_bias"),
    ("Qwen1.5-MoE-A2.7B", {"decoder_sparse_step": 2}, "decoder_sparse_step"),
    ("Qwen1.5-MoE-A2.7B", {"mlp_only_layers": [0, 5]}, "mlp_only_layers"),
    ("Mixtral-8x7B-v0.1", {"quantization_config": {"quant_method": "bitsandbytes",
                                                   "load_in_4bit": True}},
     "quantization_config.quant_method"),
    ("Llama-3.1-8B", {"quantization_config": {"quant_method": "awq", "bits": 3,
                                              "group_size": 128}}, "quantization_config.bits"),
    ("Llama-3.1-8B", {"quantization_config": {"quant_method": "gptq", "bits": 4,
                                              "group_size": 0}},
     "quantization_config.group_size"),
    ("gpt-neox-20b", {"rotary_pct": 0.01}, "rotary_pct"),  # under one rotated pair
]


@pytest.mark.parametrize("name,changes,key", UNSUPPORTED)
def test_unsupported_features_are_refused_naming_the_key(tmp_path: Path, name: str,
                                                         changes: dict, key: str) -> None:
    path = write(tmp_path, {**hub(name), **changes})
    with pytest.raises(HFConfigError) as err:
        from_hf_config(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and f"key {key!r} = " in msg and "\n" not in msg
    assert "expected" in msg


GPT2_JSON = json.dumps(CONFIGS["gpt2"], indent=1)


@pytest.mark.parametrize("data, message", [
    (GPT2_JSON.replace('"n_layer": 12', '"n_layer": ' + "9" * 5000).encode(),
     r"cfg\.json:\d+: a number of 5000 characters, too long; expected at most 100 digits"),
    (GPT2_JSON.replace('"n_head": 12', '"n_head": ' + "[" * 100_000 + "]" * 100_000).encode(),
     r"cfg\.json:9: nested deeper than 32 levels"),
    (b'{"model_type": "gpt2",\n "n_embd": "\xff"}',
     r"cfg\.json:2: not UTF-8 text \(byte 35, 0xff\)"),
    (GPT2_JSON.replace('"n_head": 12', '"n_head": 12,\n "n_layer": 4').encode(),
     r"cfg\.json:11: duplicate key 'n_layer' \(first at line 10\); expected each key once"),
    (GPT2_JSON.replace('"n_layer": 12', '"n_layer": 1000000000').encode(),
     r"n_layers = 1,000,000,000: expected at most 1,024"),
])
def test_hostile_config_json_is_refused_in_one_line(tmp_path: Path, data: bytes,
                                                    message: str) -> None:
    path = tmp_path / "cfg.json"
    path.write_bytes(data)
    with pytest.raises(HFConfigError, match=message) as err:
        from_hf_config(path)
    assert "\n" not in str(err.value)
