"""Today's families at graph level: sliding windows, latent attention, quantized checkpoints,
and the decode template, counts and fusion of every new builder against fresh builds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memwall.inputs import run_spec
from sim.opgraph import check_op_graph
from workloads import (
    PRESETS,
    Counts,
    Routing,
    RunSpec,
    build_phase,
    describe,
    from_hf_config,
    fuse,
    graph_counts,
    kv_cache_bytes,
    op_counts,
    phases,
    run_counts,
)

HUB = Path(__file__).resolve().parent / "hf_configs"
NEW = ("qwen2.5-7b", "gemma2-9b", "phi3-mini", "falcon-7b", "gpt-neox-20b", "mixtral-8x7b",
       "qwen1.5-moe-a2.7b", "deepseek-v2-lite", "deepseek-v3")


def cut(name: str, layers: int = 3, **changes) -> object:
    """A preset cut to a few layers (DeepSeek keeps a dense first layer, then MoE ones)."""
    m = PRESETS[name]
    extra = {"dense_layers": min(m.dense_layers, 1)} if m.n_experts else {}
    return dataclasses.replace(m, n_layers=layers, **{**extra, **changes})


# -- sliding windows -----------------------------------------------------------------------
def test_mistral_16k_prompt_kv_cache_stops_at_the_window() -> None:
    m = PRESETS["mistral-7b"]
    spec = RunSpec(m, prompt_len=16_384, gen_len=1)
    # 32 layers x K and V x 8 KV heads x 128 x 2 bytes, for 4096 positions, not 16384
    assert kv_cache_bytes(spec) == 32 * 2 * 8 * 128 * 4096 * 2 == 536_870_912
    unwindowed = RunSpec(dataclasses.replace(m, sliding_window=0), prompt_len=16_384, gen_len=1)
    assert kv_cache_bytes(unwindowed) == 2_147_483_648
    d = describe(RunSpec(m, prompt_len=16_384, gen_len=1))
    assert d["kv_cache_bytes_per_device"] == 536_870_912
    assert d["kv_bytes_per_token"] == 32 * 2 * 8 * 128 * 2


def test_window_reads_and_flops_stop_growing() -> None:
    m = cut("mistral-7b", 1, sliding_window=8)
    spec = RunSpec(m, prompt_len=4, gen_len=20)
    score = [build_phase(spec, k).nodes["h0.attn.score"] for k in (2, 4, 10, 19)]
    # decode step k attends over min(4 + k, 8) positions
    assert [a["reads"][1].shape[2] for a in score] == [6, 8, 8, 8]
    assert [a["writes"][0].shape[3] for a in score] == [6, 8, 8, 8]
    assert score[1]["flops"] == score[3]["flops"] == 2 * 32 * 8 * 128
    cache = {t.shape for a in build_phase(spec, 19).nodes.values() for t in a["writes"]
             if t.cls == "kv_cache"}
    assert cache == {(1, 8, 1, 128)}  # one position a step into the ring
    G0 = build_phase(RunSpec(m, prompt_len=20, gen_len=1), 0)
    # a prefill of 20 keeps the last 8 positions; its queries see 8 + 19 keys in all
    assert {t.shape for t in G0.nodes["h0.attn.rotary"]["writes"] if t.cls == "kv_cache"} == {
        (1, 8, 8, 128)}
    assert G0.nodes["h0.attn.score"]["reads"][1].shape == (1, 8, 20, 128)
    assert G0.nodes["h0.attn.score"]["writes"][0].shape == (1, 32, 20, 8)


def test_gemma2_alternates_local_and_global_layers() -> None:
    m = cut("gemma2-9b", 2, sliding_window=5)
    G = build_phase(RunSpec(m, prompt_len=3, gen_len=10), 9)  # kv_len 12
    assert G.nodes["h0.attn.score"]["reads"][1].shape[2] == 5  # layer 0: local
    assert G.nodes["h1.attn.score"]["reads"][1].shape[2] == 12  # layer 1: global
    for n in ("h0.attn.post_norm", "h0.mlp.post_norm", "embed_scale", "lm_head.softcap"):
        assert n in G
    # soft-capped scores: 5 + 3 FLOPs each
    assert G.nodes["h1.attn.softmax"]["flops"] == 8 * 1 * 16 * 1 * 12
    assert kv_cache_bytes(RunSpec(m, prompt_len=3, gen_len=10)) == (
        2 * 8 * 256 * 2 * (5 + 12))


# -- multi-head latent attention -----------------------------------------------------------
@pytest.mark.parametrize("name,layers", [("deepseek-v2-lite", 27), ("deepseek-v3", 61)])
def test_mla_caches_the_latent_and_the_rotary_key(name: str, layers: int) -> None:
    m = PRESETS[name]
    d = describe(RunSpec(m, prompt_len=100, gen_len=1))
    assert d["kv_bytes_per_token"] == layers * (512 + 64) * 2  # bf16, shared by every head
    assert d["kv_cache_bytes_per_device"] == 100 * layers * (512 + 64) * 2
    tp8 = describe(RunSpec(m, prompt_len=100, gen_len=1, tp=8))
    assert tp8["kv_cache_bytes_per_device"] == d["kv_cache_bytes_per_device"]  # replicated


def test_mla_decode_step_closed_form() -> None:
    m = cut("deepseek-v3", 1)  # one dense layer: attention by hand
    B, P, k = 2, 9, 3
    G = build_phase(RunSpec(m, batch=B, prompt_len=P, gen_len=k + 1), k)
    H, r, rope, nope, v, kv = 128, 512, 64, 128, 128, P + k
    score, value = G.nodes["h0.attn.score"], G.nodes["h0.attn.value"]
    assert score["reads"][1].shape == (B, 1, kv, r + rope)
    assert score["reads"][1] is value["reads"][1]  # one latent tensor: keys and values
    assert score["flops"] == 2 * B * H * kv * (r + rope)
    assert value["flops"] == 2 * B * H * kv * r
    assert G.nodes["h0.attn.q_absorb"]["flops"] == 2 * B * H * nope * r
    assert G.nodes["h0.attn.v_up"]["flops"] == 2 * B * H * r * v
    q_lora, d = 1536, 7168
    assert G.nodes["h0.attn.q_down"]["flops"] == 2 * B * d * q_lora
    assert G.nodes["h0.attn.q_up"]["flops"] == 2 * B * q_lora * H * (nope + rope)
    assert G.nodes["h0.attn.kv_down"]["flops"] == 2 * B * d * (r + rope)
    K, _ = fuse(G)
    core = K.nodes["h0.attn.score+softmax+value"]
    assert [t.name for t in core["reads"]].count("h0.kv_cache") == 1  # read once, fused


# -- quantized checkpoints -----------------------------------------------------------------
def test_awq_weights_are_int4_in_groups_of_128_and_the_tables_bf16() -> None:
    m = from_hf_config(HUB / "Meta-Llama-3.1-8B-Instruct-AWQ-INT4.json")
    spec = run_spec(m, prompt_len=8, gen_len=2)
    assert spec.precision.as_dict() == {"weights": "int4", "activations": "bf16",
                                        "kv_cache": "bf16", "embeddings": "bf16"}
    tables = 2 * 128256 * 4096  # embedding and LM head, untied
    norms = 65 * 4096
    packed = m.n_params - tables - norms
    # every other weight row: half a byte per element, and per group of 128 along the row
    # an fp16 scale and a 4-bit zero point (20 bits)
    groups = sum(rows * (cols // 128) for rows, cols in (
        (4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096),
        (14336, 4096), (14336, 4096), (4096, 14336))) * 32
    want = packed // 2 + groups * 20 // 8 + 2 * tables + 2 * norms  # norms: bf16 too
    assert describe(spec)["weight_bytes_per_device"] == want
    G = build_phase(spec, 1)
    assert G.nodes["lm_head"]["reads"][1].dtype == G.nodes["h0.norm1"]["reads"][1].dtype == "bf16"
    assert G.nodes["h0.mlp.up"]["reads"][1].dtype == "int4"
    assert G.nodes["lm_head"]["dtype"] == G.nodes["h0.mlp.up"]["dtype"] == "bf16"
    # --weight-dtype says otherwise: every weight at that dtype, the tables too
    assert run_spec(m, prompt_len=8, gen_len=2, weight_dtype="bf16").precision.embeddings is None
    assert run_spec(PRESETS["llama3.1-8b"], prompt_len=8, gen_len=2).precision.weights == "bf16"


def test_deepseek_v3_preset_runs_its_fp8_checkpoint() -> None:
    p = run_spec(PRESETS["deepseek-v3"], prompt_len=8, gen_len=2).precision
    assert (p.weights, p.embeddings) == ("fp8", "bf16")


# -- the builders' StepRules: template, fusion and counts against fresh builds ---------------
@st.composite
def new_family_specs(draw):
    name = draw(st.sampled_from(NEW))
    m = cut(name, 3, sliding_window=3 if PRESETS[name].sliding_window else 0)
    tps = [t for t in (1, 2) if all(n % t == 0 for n in (m.n_heads, m.n_kv_heads, m.d_ff,
                                                         m.d_ff_expert, m.d_ff_shared))]
    return RunSpec(m, batch=draw(st.integers(1, 3)), prompt_len=draw(st.integers(1, 6)),
                   gen_len=draw(st.integers(2, 6)), tp=draw(st.sampled_from(tps)),
                   routing=draw(st.sampled_from([Routing(), Routing("zipf", 1.3, 7),
                                                 Routing(seed=5)])))


@settings(max_examples=30, deadline=None)
@given(new_family_specs())
def test_templates_and_kernels_match_fresh_builds(spec: RunSpec) -> None:
    for k, (G, K) in enumerate(zip(phases(spec), phases(spec, "fused"), strict=True)):
        F = build_phase(spec, k)
        assert dict(G.nodes(data=True)) == dict(F.nodes(data=True)), k
        assert G.graph == F.graph and set(G.edges) == set(F.edges)
        check_op_graph(G)
        FK, _ = fuse(F)
        assert dict(K.nodes(data=True)) == dict(FK.nodes(data=True)), k
        assert K.graph == FK.graph and nx.is_directed_acyclic_graph(K)


@settings(max_examples=30, deadline=None)
@given(new_family_specs())
def test_run_counts_equal_the_sum_over_every_graph(spec: RunSpec) -> None:
    per_phase, by_op = [], {}
    for G in phases(spec):
        per_phase.append(graph_counts(G))
        for n, c in op_counts(G).items():
            op = G.nodes[n]["op"]
            by_op[op] = by_op.get(op, Counts()) + c
    rc = run_counts(spec)
    assert rc.phases == tuple(per_phase) and rc.by_op_type == by_op


@pytest.mark.parametrize("name", NEW)
def test_new_families_fuse_with_the_same_flops(name: str) -> None:
    spec = RunSpec(cut(name), prompt_len=4, gen_len=3)
    G = build_phase(spec, 2)
    K, _ = fuse(G)
    assert K.number_of_nodes() < G.number_of_nodes()
    assert sum(a["flops"] for _, a in K.nodes(data=True)) == sum(
        a["flops"] for _, a in G.nodes(data=True))
    assert set(G.graph["per_step"]) >= {"h2.attn.score", "h2.attn.softmax", "h2.attn.value"}
