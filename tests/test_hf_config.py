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
