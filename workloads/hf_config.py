"""Hugging Face `config.json` -> ModelConfig, read offline, for the model_types in MAPPERS.

Normalise, validate, construct: each key is read once through `Reader`, which raises
HFConfigError naming the file, the key, the value and what was expected. A key is read when it
changes shapes, bytes or FLOPs; a value that would change them in a way memwall does not model
is refused with its key, never approximated:
    rope_scaling of an unknown type; a Qwen2 sliding window (use_sliding_window: true, which
    applies to layers past max_window_layers); a layer_types pattern other than all full, all
    sliding, or Gemma 2's sliding/full alternation; Falcon's alibi and
    apply_residual_connection_post_layernorm; OPT's projected embeddings and post-norm;
    DeepSeek's attention_bias and moe_layer_freq != 1; Qwen2-MoE's decoder_sparse_step != 1
    and mlp_only_layers; a quantization_config other than AWQ or GPTQ at 4 bits, or fp8.
Keys that change none of them are ignored, among them: every dropout, initializer and epsilon;
torch_dtype (the run's --weight-dtype, bf16 by default, sets the bytes, or the
quantization_config); rope_theta, and rope_scaling's factors (frequencies only); Gemma 2's
query_pre_attn_scalar and cache_implementation; Phi-3's original_max_position_embeddings;
the routers' norm_topk_prob and routed_scaling_factor (k weights per token rescaled, as
uncounted as the top-k selection), n_group and topk_group (group-limited routing
restricts which experts a token may pick, not how many: the run's --routing decides which),
ep_size, aux-loss and jitter settings; DeepSeek-V3's num_nextn_predict_layers (the
multi-token-prediction module is not run in plain decoding, and its 14B parameters are not
in the published 671B); AWQ and GPTQ's version, zero_point, sym, desc_act; fp8's
activation_scheme and weight_block_size (its block scales, 0.02% of the bytes, are not counted,
as no per-tensor fp8 or int8 scale is).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workloads.hf_reader import GELUS, ROPE_TYPES, HFConfigError, Reader, load_json
from workloads.model import ModelConfig, WorkloadError

__all__ = ["MAPPERS", "QUANT_METHODS", "ROPE_TYPES", "HFConfigError", "from_hf_config",
           "parse_hf_config"]

#: quantization_config quant_method -> the weight dtype it stores
QUANT_METHODS = {"awq": "int4", "gptq": "int4", "fp8": "fp8"}
AWQ_GPTQ_GROUP_BITS = 20  # an fp16 scale and a packed 4-bit zero point per group


def _gpt2(r: Reader) -> dict[str, Any]:
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


def _bert(r: Reader) -> dict[str, Any]:
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


def _llama(r: Reader) -> dict[str, Any]:  # also the base of Mistral, Qwen2, Phi-3, Mixtral
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    r.choice("hidden_act", "silu", ("silu", "swish"))
    r.rope_scaling()
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
                n_kv_heads=r.kv_heads("num_key_value_heads", heads),
                d_head=r.heads(d, heads, "hidden_size", "num_attention_heads"),
                d_ff=r.integer("intermediate_size"), vocab=r.integer("vocab_size"),
                max_positions=r.integer("max_position_embeddings"), activation="swiglu",
                norm="rmsnorm", positions="rotary",
                tied_embeddings=r.flag("tie_word_embeddings", False),
                attn_bias=r.flag("attention_bias", False), mlp_bias=r.flag("mlp_bias", False))


def _mistral(r: Reader) -> dict[str, Any]:
    f = _llama(r)
    f["sliding_window"] = r.window()
    r.layer_types(f["n_layers"], f["sliding_window"], 0)
    return f


def _qwen2(r: Reader) -> dict[str, Any]:
    r.refuse("use_sliding_window", (False,), "Qwen2's window on layers past max_window_layers")
    f = _llama(r)
    f.update(attn_bias=False, qkv_bias=True)  # Qwen2Attention: q, k, v biased; o not
    r.layer_types(f["n_layers"], 0, 0)
    return f


def _phi3(r: Reader) -> dict[str, Any]:
    f = _llama(r)
    f["fused_qkv"] = True  # qkv_proj; gate_up_proj holds the gate and up weights (same bytes)
    f["sliding_window"] = r.window()
    f["rotary_dims"] = r.rotary(f["d_head"], "partial_rotary_factor",
                                r.number("partial_rotary_factor", 1.0))
    r.layer_types(f["n_layers"], f["sliding_window"], 0)
    return f


def _gemma(r: Reader) -> dict[str, Any]:
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    act = r.get("hidden_activation", "hidden_act") or "gelu_pytorch_tanh"
    if act not in GELUS:
        raise r.fail("hidden_activation", act, f"one of {', '.join(GELUS)}")
    r.rope_scaling()
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
                n_kv_heads=r.kv_heads("num_key_value_heads", heads),
                d_head=r.integer("head_dim", 256), d_ff=r.integer("intermediate_size"),
                vocab=r.integer("vocab_size"), max_positions=r.integer("max_position_embeddings"),
                activation="geglu", norm="rmsnorm", positions="rotary",
                tied_embeddings=r.flag("tie_word_embeddings", True),
                attn_bias=r.flag("attention_bias", False), mlp_bias=False, embed_scale=True)


def _gemma2(r: Reader) -> dict[str, Any]:
    f = _gemma(r)
    window = r.opt_int("sliding_window", 0)
    f.update(sandwich_norms=True, sliding_window=window, global_every=2 if window else 0,
             attn_softcap=r.raw.get("attn_logit_softcapping") is not None,
             logit_softcap=r.raw.get("final_logit_softcapping") is not None)
    r.layer_types(f["n_layers"], window, f["global_every"])  # local at even layers (HF)
    return f


def _gptj(r: Reader) -> dict[str, Any]:
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


def _gpt_neox(r: Reader) -> dict[str, Any]:
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    dh = _head(r, d, heads, "hidden_size", "num_attention_heads")
    parallel = r.flag("use_parallel_residual", True)
    r.rope_scaling()
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d,
                n_heads=heads, n_kv_heads=heads, d_head=dh, d_ff=r.integer("intermediate_size"),
                vocab=r.integer("vocab_size"), max_positions=r.integer("max_position_embeddings"),
                activation=r.gelu_or_relu("hidden_act", "gelu"), norm="layernorm",
                positions="rotary", tied_embeddings=r.flag("tie_word_embeddings", False),
                attn_bias=r.flag("attention_bias", True), mlp_bias=True, fused_qkv=True,
                rotary_dims=r.rotary(dh, "rotary_pct", r.number("rotary_pct", 0.25)),
                block="parallel" if parallel else "pre_norm", parallel_mlp_norm=parallel)


def _falcon(r: Reader) -> dict[str, Any]:  # also RefinedWeb, RefinedWebModel (remote code)
    d = r.integer("hidden_size")
    heads = r.integer("num_attention_heads", None, "n_head")
    r.refuse("alibi", (False,), "ALiBi attention")
    r.refuse("apply_residual_connection_post_layernorm", (False,),
             "a residual taken after the norm")
    new_arch = r.flag("new_decoder_architecture", False)
    if new_arch:
        kv = r.kv_heads("num_kv_heads", heads)
        norms = r.opt_int("num_ln_in_parallel_attn", 2)
        if norms not in (1, 2):
            raise r.fail("num_ln_in_parallel_attn", norms, "1 or 2")
    else:
        kv, norms = (1 if r.flag("multi_query", True) else heads), 1
    parallel = new_arch or r.flag("parallel_attn", True)
    bias = r.flag("bias", False)
    r.rope_scaling()
    return dict(arch="decoder", n_layers=r.integer("num_hidden_layers", None, "n_layer"),
                d_model=d, n_heads=heads, n_kv_heads=kv,
                d_head=r.heads(d, heads, "hidden_size", "num_attention_heads"),
                d_ff=r.opt_int("ffn_hidden_size", 4 * d), vocab=r.integer("vocab_size"),
                max_positions=r.integer("max_position_embeddings", 2048),  # FalconConfig
                activation=r.gelu_or_relu("activation", "gelu"), norm="layernorm",
                positions="rotary", tied_embeddings=r.flag("tie_word_embeddings", True),
                attn_bias=bias, mlp_bias=bias, fused_qkv=True,
                block="parallel" if parallel else "pre_norm",
                parallel_mlp_norm=parallel and norms == 2)


def _opt(r: Reader) -> dict[str, Any]:
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


def _mixtral(r: Reader) -> dict[str, Any]:
    f = _mistral(r)
    f.update(n_experts=r.integer("num_local_experts"), top_k=r.integer("num_experts_per_tok"),
             d_ff_expert=f["d_ff"])
    return f


def _qwen2_moe(r: Reader) -> dict[str, Any]:
    r.refuse("decoder_sparse_step", (1,), "a dense FFN between sparse ones")
    r.refuse("mlp_only_layers", ([],), "dense FFN layers among the sparse ones")
    f = _qwen2(r)
    shared = r.opt_int("shared_expert_intermediate_size", 0)
    f.update(n_experts=r.integer("num_experts"), top_k=r.integer("num_experts_per_tok"),
             d_ff_expert=r.integer("moe_intermediate_size"), d_ff_shared=shared,
             shared_gate=shared > 0)
    return f


def _deepseek(r: Reader) -> dict[str, Any]:  # deepseek_v2, deepseek_v3
    r.refuse("attention_bias", (False,), "a biased MLA projection")
    r.refuse("moe_layer_freq", (1,), "a dense FFN between MoE ones")
    r.choice("hidden_act", "silu", ("silu", "swish"))
    r.rope_scaling()
    d, heads = r.integer("hidden_size"), r.integer("num_attention_heads")
    rope, nope = r.integer("qk_rope_head_dim"), r.integer("qk_nope_head_dim")
    f: dict[str, Any] = dict(
        arch="decoder", n_layers=r.integer("num_hidden_layers"), d_model=d, n_heads=heads,
        n_kv_heads=heads, d_head=nope + rope, d_ff=r.integer("intermediate_size"),
        vocab=r.integer("vocab_size"), max_positions=r.integer("max_position_embeddings"),
        activation="swiglu", norm="rmsnorm", positions="rotary",
        tied_embeddings=r.flag("tie_word_embeddings", False), attn_bias=False, mlp_bias=False,
        rotary_dims=rope, kv_lora_rank=r.integer("kv_lora_rank"),
        q_lora_rank=r.opt_int("q_lora_rank", 0), v_head_dim=r.integer("v_head_dim"))
    if r.raw.get("n_routed_experts") is not None:
        moe = r.integer("moe_intermediate_size")
        f.update(n_experts=r.integer("n_routed_experts"), top_k=r.integer("num_experts_per_tok"),
                 d_ff_expert=moe, d_ff_shared=moe * r.opt_int("n_shared_experts", 0),
                 dense_layers=r.opt_int("first_k_dense_replace", 0),
                 router_bias=r.raw.get("topk_method") == "noaux_tc",  # e_score_correction_bias
                 sigmoid_router=r.choice("scoring_func", "softmax",
                                         ("softmax", "sigmoid")) == "sigmoid")
    return f


def _head(r: Reader, d: int, heads: int, d_key: str, h_key: str) -> int:
    if d % heads:
        raise r.fail(h_key, heads, f"a divisor of {d_key} = {d}")
    return d // heads


def _quantization(r: Reader) -> dict[str, Any]:
    """The weight dtype and int4 groups of a quantized checkpoint (quantization_config)."""
    q = r.raw.get("quantization_config")
    if q is None:
        return {}
    if not isinstance(q, dict):
        raise r.fail("quantization_config", q, "an object")
    method = q.get("quant_method")
    if method not in QUANT_METHODS:
        raise r.fail("quantization_config.quant_method", method,
                     f"one of {', '.join(QUANT_METHODS)} (other methods are not modelled)")
    if method == "fp8":
        return {"weight_dtype": "fp8"}
    bits, group = q.get("bits"), q.get("group_size", 128)
    if bits != 4:
        raise r.fail("quantization_config.bits", bits, f"4 for {method} (other widths are "
                                                       "not modelled)")
    if isinstance(group, bool) or not isinstance(group, int) or not (group > 0 or group == -1):
        raise r.fail("quantization_config.group_size", group, "a positive int, or -1 for one "
                                                              "group per row")
    return {"weight_dtype": "int4", "quant_group": max(group, 0),
            "quant_group_bits": AWQ_GPTQ_GROUP_BITS}


MAPPERS: dict[str, Callable[[Reader], dict[str, Any]]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _mistral, "gptj": _gptj,
    "opt": _opt, "qwen2": _qwen2, "gemma": _gemma, "gemma2": _gemma2, "phi3": _phi3,
    "falcon": _falcon, "RefinedWeb": _falcon, "RefinedWebModel": _falcon,
    "gpt_neox": _gpt_neox, "mixtral": _mixtral, "qwen2_moe": _qwen2_moe,
    "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
}


def from_hf_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Read a Hugging Face config.json (no network). Name: `name`, else the file's folder."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HFConfigError(f"{path}: cannot read: {err.strerror}") from None
    return parse_hf_config(data, str(path), name or path.resolve().parent.name or path.stem)


def parse_hf_config(text: str | bytes, source: str, name: str) -> ModelConfig:
    """ModelConfig from the text (or bytes) of a config.json; `source` names it in errors."""
    raw = load_json(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"),
                    source)
    r = Reader(source, raw)
    if "model_type" not in raw:
        raise HFConfigError(f"{source}: missing key 'model_type': expected one of "
                            f"{', '.join(MAPPERS)}")
    if r.model_type not in MAPPERS:
        raise r.fail("model_type", r.model_type, f"one of {', '.join(MAPPERS)}")
    fields = MAPPERS[r.model_type](r)
    fields.update(_quantization(r))
    try:
        return ModelConfig(name=name, **fields)
    except WorkloadError as err:
        raise HFConfigError(f"{source}: {err}") from None
