"""Hugging Face `config.json` -> ModelConfig, read offline, for the model_types in MAPPERS.

Normalise, validate, construct: each key is read once through `_Reader`, which raises
HFConfigError naming the file, the key, the value and what was expected. Only the fields that
change shapes or counts are read; everything else in the file is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.errors import MemwallError
from workloads.model import Activation, ModelConfig, WorkloadError

_GELUS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "quick_gelu")


class HFConfigError(MemwallError):
    """A config.json that cannot be mapped: file, key, value and what was expected."""


class _Reader:
    def __init__(self, path: str, raw: dict[str, Any]) -> None:
        self.path, self.raw = path, raw
        self.model_type = raw.get("model_type")

    def fail(self, key: str, value: object, expected: str) -> HFConfigError:
        return HFConfigError(f"{self.path}: key {key!r} = {value!r}: expected {expected}")

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.raw.get(key, default)
        if value is None and key not in self.raw:
            raise HFConfigError(f"{self.path}: missing key {key!r}: expected a positive int "
                                f"for model_type {self.model_type!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, value, "a positive int")
        return value

    def opt_int(self, key: str, default: int) -> int:
        return default if self.raw.get(key) is None else self.integer(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw.get(key, default)
        if value not in allowed:
            raise self.fail(key, value, f"one of {', '.join(allowed)}")
        return value

    def gelu_or_relu(self, key: str, default: str) -> Activation:
        value = self.choice(key, default, (*_GELUS, "relu"))
        return "relu" if value == "relu" else "gelu"


def _gpt2(r: _Reader) -> dict[str, Any]:
    d = r.integer("n_embd")
    heads = r.integer("n_head")
    return dict(arch="decoder", n_layers=r.integer("n_layer"), d_model=d, n_heads=heads,
                n_kv_heads=heads, d_head=_head(r, d, heads, "n_embd", "n_head"),
                d_ff=r.opt_int("n_inner", 4 * d), vocab=r.integer("vocab_size"),
                max_positions=r.integer("n_positions"),
                activation=r.gelu_or_relu("activation_function", "gelu_new"),
                norm="layernorm", positions="learned",
                tied_embeddings=r.flag("tie_word_embeddings", True), attn_bias=True,
                mlp_bias=True, fused_qkv=True)


def _bert(r: _Reader) -> dict[str, Any]:
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    return dict(arch="encoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
                n_kv_heads=heads, d_head=_head(r, d, heads, "hidden_size",
                                               "num_attention_heads"),
                d_ff=r.integer("intermediate_size"), vocab=r.integer("vocab_size"),
                max_positions=r.integer("max_position_embeddings"),
                activation=r.gelu_or_relu("hidden_act", "gelu"), norm="layernorm",
                positions="learned", tied_embeddings=False, attn_bias=True, mlp_bias=True,
                block="post_norm", final_norm=False, embed_norm=True,
                type_vocab=r.integer("type_vocab_size", 2), pooler=True)


def _llama(r: _Reader) -> dict[str, Any]:  # also Mistral
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    r.choice("hidden_act", "silu", ("silu", "swish"))
    kv = r.opt_int("num_key_value_heads", heads)
    if heads % kv:
        raise r.fail("num_key_value_heads", kv, f"a divisor of num_attention_heads = {heads}")
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
                n_kv_heads=kv, d_head=(r.opt_int("head_dim", 0) if r.raw.get("head_dim")
                                       else _head(r, d, heads, "hidden_size",
                                                  "num_attention_heads")),
                d_ff=r.integer("intermediate_size"), vocab=r.integer("vocab_size"),
                max_positions=r.integer("max_position_embeddings"), activation="swiglu",
                norm="rmsnorm", positions="rotary",
                tied_embeddings=r.flag("tie_word_embeddings", False),
                attn_bias=r.flag("attention_bias", False), mlp_bias=r.flag("mlp_bias", False))


def _gptj(r: _Reader) -> dict[str, Any]:
    d, heads = r.integer("n_embd"), r.integer("n_head")
    dh = _head(r, d, heads, "n_embd", "n_head")
    rot = r.opt_int("rotary_dim", dh)
    if rot > dh or rot % 2:
        raise r.fail("rotary_dim", rot, f"an even number <= n_embd / n_head = {dh}")
    return dict(arch="decoder", n_layers=r.integer("n_layer"), d_model=d, n_heads=heads,
                n_kv_heads=heads, d_head=dh, d_ff=r.opt_int("n_inner", 4 * d),
                vocab=r.integer("vocab_size"), max_positions=r.integer("n_positions"),
                activation=r.gelu_or_relu("activation_function", "gelu_new"),
                norm="layernorm", positions="rotary",
                tied_embeddings=r.flag("tie_word_embeddings", False), attn_bias=False,
                mlp_bias=True, block="parallel", rotary_dims=rot, lm_head_bias=True)


def _opt(r: _Reader) -> dict[str, Any]:
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    if r.opt_int("word_embed_proj_dim", d) != d:  # opt-350m's project_in / project_out
        raise r.fail("word_embed_proj_dim", r.raw["word_embed_proj_dim"],
                     f"hidden_size = {d} (projected embeddings are not modelled)")
    if not r.flag("do_layer_norm_before", True):  # opt-350m again
        raise r.fail("do_layer_norm_before", False, "true (post-norm OPT is not modelled)")
    bias = r.flag("enable_bias", True)
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
                n_kv_heads=heads, d_head=_head(r, d, heads, "hidden_size",
                                               "num_attention_heads"),
                d_ff=r.integer("ffn_dim"), vocab=r.integer("vocab_size"),
                max_positions=r.integer("max_position_embeddings"),
                activation=r.gelu_or_relu("activation_function", "relu"), norm="layernorm",
                positions="learned", tied_embeddings=r.flag("tie_word_embeddings", True),
                attn_bias=bias, mlp_bias=bias, pos_offset=2)  # OPTLearnedPositionalEmbedding


def _head(r: _Reader, d: int, heads: int, d_key: str, h_key: str) -> int:
    if d % heads:
        raise r.fail(h_key, heads, f"a divisor of {d_key} = {d}")
    return d // heads


MAPPERS: dict[str, Callable[[_Reader], dict[str, Any]]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _llama, "gptj": _gptj,
    "opt": _opt,
}


def from_hf_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Read a Hugging Face config.json (no network). Name: `name`, else the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise HFConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse_hf_config(text, str(path), name or path.resolve().parent.name or path.stem)


def parse_hf_config(text: str, source: str, name: str) -> ModelConfig:
    """ModelConfig from the text of a config.json; `source` names it in errors."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise HFConfigError(f"{source}:{err.lineno}: invalid JSON: {err.msg} "
                            f"(column {err.colno})") from None
    if not isinstance(raw, dict):
        raise HFConfigError(f"{source}: top level is {type(raw).__name__}: expected an object")
    r = _Reader(source, raw)
    if "model_type" not in raw:
        raise HFConfigError(f"{source}: missing key 'model_type': expected one of "
                            f"{', '.join(MAPPERS)}")
    if r.model_type not in MAPPERS:
        raise r.fail("model_type", r.model_type, f"one of {', '.join(MAPPERS)}")
    fields = MAPPERS[r.model_type](r)
    try:
        return ModelConfig(name=name, **fields)
    except WorkloadError as err:
        raise HFConfigError(f"{source}: {err}") from None
