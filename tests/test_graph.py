"""Op graphs: contract, run semantics, closed-form FLOPs and MOPs, template reuse, TP."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.opgraph import DTYPES, check_op_graph
from workloads import (
    PRESETS,
    Precision,
    RunSpec,
    WorkloadError,
    build_phase,
    final_phase,
    graph_counts,
    n_phases,
    op_counts,
    phases,
)

I8 = Precision.uniform("int8")
FAMILIES = ("gpt2", "bert-base", "llama2-70b", "gpt-j-6b", "mistral-7b")


def two_layers(name: str):
    """A preset cut to two layers: every op kind, at real widths, built fast."""
    return dataclasses.replace(PRESETS[name], n_layers=2)


def decoder_specs():
    return st.builds(
        RunSpec,
        model=st.sampled_from(["gpt2", "llama2-70b", "gpt-j-6b", "mistral-7b"]).map(two_layers),
        batch=st.integers(1, 4), prompt_len=st.integers(1, 9), gen_len=st.integers(0, 5),
        precision=st.builds(Precision, *[st.sampled_from(DTYPES)] * 3),
        tp=st.sampled_from([1, 2]))


def matmul_flops(G: nx.DiGraph) -> int:
    return sum(a["flops"] for _, a in G.nodes(data=True) if a["kind"] == "matmul")


# -- contract and run semantics -------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_honours_the_contract(name: str) -> None:
    m = PRESETS[name]
    spec = RunSpec(m, batch=2, prompt_len=4, gen_len=0 if m.arch == "encoder" else 3)
    for k in range(n_phases(spec)):
        G = build_phase(spec, k)  # check_op_graph runs inside
        assert G.graph["model"] == name and G.graph["step"] == k
        assert G.graph["weight_bytes"].keys() >= {
            t.name for _, a in G.nodes(data=True) for t in a["reads"] if t.cls == "weight"}


def test_decoder_phases() -> None:
    spec = RunSpec(PRESETS["gpt2"], batch=2, prompt_len=5, gen_len=4)
    seen = [(G.graph["phase"], G.graph["step"], G.graph["tokens"], G.graph["kv_len"],
             "lm_head" in G) for G in phases(spec)]
    assert seen == [("prefill", 0, 5, 5, True), ("decode", 1, 1, 6, True),
                    ("decode", 2, 1, 7, True), ("decode", 3, 1, 8, True)]
    assert n_phases(spec) == 4 and final_phase(spec).graph["kv_len"] == 8
    G0 = build_phase(spec, 0)
    assert G0.nodes["lm_head"]["reads"][0].shape == (2, 1, 768)  # last position only
    # gen_len 0: prefill only, no token generated, no LM head; gen_len 1: one token
    assert "lm_head" not in build_phase(RunSpec(PRESETS["gpt2"], prompt_len=5, gen_len=0), 0)
    assert n_phases(RunSpec(PRESETS["gpt2"], prompt_len=5, gen_len=1)) == 1


def test_encoder_phase() -> None:
    spec = RunSpec(PRESETS["bert-base"], batch=2, prompt_len=16, gen_len=0)
    (G,) = list(phases(spec))
    assert (G.graph["phase"], G.graph["tokens"], G.graph["kv_len"]) == ("encode", 16, 0)
    assert "pooler" in G and "lm_head" not in G
    assert not [t for _, a in G.nodes(data=True) for t in (*a["reads"], *a["writes"])
                if t.cls == "kv_cache"]
    with pytest.raises(WorkloadError, match="gen_len = 3: 'bert-base' is an encoder"):
        RunSpec(PRESETS["bert-base"], prompt_len=16, gen_len=3)


def test_run_errors() -> None:
    with pytest.raises(WorkloadError, match="batch = 0"):
        RunSpec(PRESETS["gpt2"], batch=0, prompt_len=1, gen_len=0)
    with pytest.raises(WorkloadError, match="learned position table of 1024"):
        RunSpec(PRESETS["gpt2"], prompt_len=1000, gen_len=30)
    # every family: a rotary model is refused past its max_position_embeddings too
    with pytest.raises(WorkloadError, match="4199 positions: 'llama2-7b' has "
                                            "max_position_embeddings = 4096"):
        RunSpec(PRESETS["llama2-7b"], prompt_len=4000, gen_len=200)
    RunSpec(PRESETS["llama2-7b"], prompt_len=4000, gen_len=97)  # 4096 positions: allowed
    with pytest.raises(WorkloadError, match="200001 positions: 'llama3.1-8b' has "
                                            "max_position_embeddings = 131072"):
        RunSpec(PRESETS["llama3.1-8b"], prompt_len=200_000, gen_len=2)


def test_layer_ops_and_edges() -> None:
    G = build_phase(RunSpec(two_layers("llama2-70b"), prompt_len=3, gen_len=2), 1)
    order = [n for n in nx.topological_sort(G) if G.nodes[n]["layer"] == 0]
    assert sorted(G.nodes[n]["op"] for n in order) == sorted(
        ["norm", "qkv", "rotary", "attn_score", "softmax", "attn_value", "attn_out",
         "residual", "norm", "ffn_gate", "ffn_up", "activation", "ffn_down", "residual"])
    chain = ["h0.norm1", "h0.attn.qkv", "h0.attn.rotary", "h0.attn.score", "h0.attn.softmax",
             "h0.attn.value", "h0.attn.out", "h0.attn.residual", "h0.norm2", "h0.mlp.act",
             "h0.mlp.down", "h0.mlp.residual"]
    assert [n for n in order if n in chain] == chain
    assert nx.has_path(G, "h0.attn.qkv", "h0.attn.value")  # V cache written before AV
    assert nx.has_path(G, "embed", "lm_head") and nx.has_path(G, "h0.mlp.residual",
                                                               "h1.attn.residual")
    qkv = G.nodes["h0.attn.qkv"]
    assert [t.name for t in qkv["writes"]] == ["h0.attn.q", "h0.attn.k_new", "h0.v_cache"]
    assert G.nodes["h0.attn.rotary"]["writes"][1].name == "h0.k_cache"


def test_weight_only_int8_computes_in_bf16() -> None:
    G = build_phase(RunSpec(two_layers("llama2-70b"), prompt_len=1, gen_len=0,
                            precision=Precision("int8", "bf16", "fp8")), 0)
    assert G.nodes["h0.attn.qkv"]["dtype"] == "bf16"
    assert G.nodes["h0.attn.score"]["dtype"] == "bf16"
    assert G.nodes["h0.attn.qkv"]["reads"][1].nbytes == 8192 * 8192  # 1 byte per weight


# -- closed forms --------------------------------------------------------------------------
@pytest.mark.parametrize("B,P,k", [(1, 1, 1), (3, 7, 5), (8, 100, 28)])
def test_gpt2_decode_step_closed_form(B: int, P: int, k: int) -> None:
    m = PRESETS["gpt2"]
    L, d, V, H = m.n_layers, m.d_model, m.vocab, m.n_heads
    spec = RunSpec(m, batch=B, prompt_len=P, gen_len=k + 1, precision=I8)
    G = build_phase(spec, k)
    t = P + k  # kv_len
    # 12 d^2 matmul weights per layer (qkv 3d^2, out d^2, up 4d^2, down 4d^2), 9d biases,
    # LM head 2dV (tied), QK^T and AV 2 x 2 t d per layer, per sequence
    assert matmul_flops(G) == 2 * B * L * 12 * d * d + B * L * 9 * d + 2 * B * d * V \
        + 4 * B * L * t * d
    # MOPs at 1 byte per element, per layer: 36 Bd activations in and out, K and V caches
    # read (2 B t d), scores and probabilities (4 B H t), the layer's weights (12 d^2 + 13 d);
    # outside: embedding (gather + write 2Bd), position (2Bd + one row d), final norm
    # (2Bd + 2d), LM head (Bd + the whole table Vd + logits BV)
    expected = (L * (36 * B * d + 2 * B * t * d + 4 * B * H * t + 12 * d * d + 13 * d)
                + 7 * B * d + 3 * d + V * d + B * V)
    assert graph_counts(G).mops_bytes == expected


def test_gpt2_prefill_closed_form() -> None:
    m, B, P = PRESETS["gpt2"], 2, 33
    L, d, V = m.n_layers, m.d_model, m.vocab
    G = build_phase(RunSpec(m, batch=B, prompt_len=P, gen_len=1), 0)
    assert matmul_flops(G) == (2 * B * P * L * 12 * d * d + B * P * L * 9 * d
                               + 2 * B * d * V + 4 * B * L * P * P * d)  # dense P x P


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "mistral-7b"])
def test_llama_decode_step_closed_form(name: str) -> None:
    m, B, P, k = PRESETS[name], 4, 17, 3
    L, d, V, dh, ff = m.n_layers, m.d_model, m.vocab, m.d_head, m.d_ff
    kv_dim = m.n_kv_heads * dh
    G = build_phase(RunSpec(m, batch=B, prompt_len=P, gen_len=k + 1), k)
    weights = 2 * d * d + 2 * d * kv_dim + 3 * d * ff  # q, o; k, v (GQA); gate, up, down
    attention = 4 * B * (P + k) * m.n_heads * dh  # QK^T + AV per layer
    assert matmul_flops(G) == L * (2 * B * weights + attention) + 2 * B * d * V
    kv_bytes = 2 * B * m.n_kv_heads * (P + k) * dh * 2  # bf16 K + V cache read per layer
    reads = [t for _, a in G.nodes(data=True) for t in a["reads"] if t.cls == "kv_cache"]
    assert sum(t.nbytes for t in reads) == L * kv_bytes


def test_bert_encode_closed_form() -> None:
    m, B, T = PRESETS["bert-base"], 2, 128
    L, d = m.n_layers, m.d_model
    G = build_phase(RunSpec(m, batch=B, prompt_len=T, gen_len=0), 0)
    assert matmul_flops(G) == (2 * B * T * L * 12 * d * d + B * T * L * 9 * d
                               + 4 * B * L * T * T * d + 2 * B * d * d + B * d)  # + pooler


# -- invariants ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(decoder_specs())
def test_template_matches_fresh_builds(spec: RunSpec) -> None:
    gathers = ("embed.weight", "pos_embed.weight")  # rows read depend on the tokens fed
    seen = []
    for k, G in enumerate(phases(spec)):
        F = build_phase(spec, k)
        assert dict(G.nodes(data=True)) == dict(F.nodes(data=True))
        assert G.graph == F.graph and set(G.edges) == set(F.edges)
        check_op_graph(G)
        seen.append({t.name: t for _, a in G.nodes(data=True) for t in a["reads"]
                     if t.cls == "weight" and t.name not in gathers})
    assert all(w == seen[-1] for w in seen[1:])  # same tensors in every decode step
    if spec.gen_len:
        assert seen[0] == seen[-1]  # and in the prefill


@settings(max_examples=25, deadline=None)
@given(decoder_specs())
def test_mops_are_operand_and_result_bytes(spec: RunSpec) -> None:
    G = build_phase(spec, spec.n_phases - 1)
    for n, c in op_counts(G).items():
        a = G.nodes[n]
        assert c.mops_bytes == sum(t.nbytes for t in (*a["reads"], *a["writes"]))
        assert c.flops == a["flops"]


@settings(max_examples=25, deadline=None)
@given(decoder_specs(), st.integers(2, 5))
def test_batch_scales_everything_but_weights(spec: RunSpec, factor: int) -> None:
    big = dataclasses.replace(spec, batch=spec.batch * factor)
    k = spec.n_phases - 1
    G, H = build_phase(spec, k), build_phase(big, k)
    gathers = ("embed.weight", "type_embed.weight")  # one table row per token
    for n, a in G.nodes(data=True):
        assert H.nodes[n]["flops"] == factor * a["flops"]
        for t, u in zip((*a["reads"], *a["writes"]), (*H.nodes[n]["reads"],
                                                      *H.nodes[n]["writes"]), strict=True):
            if t.cls == "weight" and not (n == "embed" or n == "type_embed"):
                assert u.nbytes == t.nbytes
            elif t.cls != "weight" or t.name in gathers:
                assert u.nbytes == factor * t.nbytes


def test_weight_names_stable_across_phases() -> None:
    spec = RunSpec(two_layers("gpt2"), prompt_len=6, gen_len=3)
    names = [{t.name for _, a in G.nodes(data=True) for t in a["reads"] if t.cls == "weight"}
             for G in (build_phase(spec, k) for k in range(3))]
    assert names[0] == names[1] == names[2]
    assert build_phase(spec, 2).nodes["lm_head"]["reads"][1].name == "embed.weight"  # tied


# -- tensor parallel -----------------------------------------------------------------------
def test_tensor_parallel_llama2_70b() -> None:
    m = PRESETS["llama2-70b"]
    one = build_phase(RunSpec(m, prompt_len=8, gen_len=2), 1)
    eight = build_phase(RunSpec(m, prompt_len=8, gen_len=2, tp=8), 1)
    w1, w8 = sum(one.graph["weight_bytes"].values()), sum(eight.graph["weight_bytes"].values())
    assert w8 == pytest.approx(w1 / 8, rel=0.03)  # the replicated embedding is 0.4 %
    assert matmul_flops(eight) == pytest.approx(matmul_flops(one) / 8, rel=1e-3)
    coll = [a for _, a in eight.nodes(data=True) if a["kind"] == "collective"]
    assert len(coll) == 2 * m.n_layers
    assert all(a["op"] == "all_reduce" and a["group"] == 8 and a["flops"] == 0
               and a["reads"][0].nbytes == m.d_model * 2 for a in coll)
    assert not [a for _, a in one.nodes(data=True) if a["kind"] == "collective"]
    k_cache = eight.nodes["h0.attn.score"]["reads"][1]
    assert k_cache.shape == (1, 1, 9, 128)  # (B, 8 KV heads / 8, kv_len 8 + 1, d_head)
    assert nx.has_path(eight, "h0.attn.out", "h0.attn.all_reduce")
    assert nx.has_path(eight, "h0.attn.all_reduce", "h0.attn.residual")


def test_tensor_parallel_errors() -> None:
    with pytest.raises(WorkloadError, match="tp = 3: 'llama2-7b' has n_heads = 32"):
        RunSpec(PRESETS["llama2-7b"], prompt_len=1, gen_len=0, tp=3)
    with pytest.raises(WorkloadError, match="n_kv_heads = 8"):
        RunSpec(PRESETS["llama2-70b"], prompt_len=1, gen_len=0, tp=16)


def test_tensor_parallel_tied_lm_head_reads_a_vocab_shard() -> None:
    G = build_phase(RunSpec(two_layers("gpt2"), prompt_len=1, gen_len=1, tp=4), 0)
    w = G.nodes["lm_head"]["reads"][1]
    assert (w.name, w.shape) == ("embed.weight", (-(-50257 // 4), 768))
    assert G.graph["weight_bytes"]["embed.weight"] == 50257 * 768 * 2  # stored whole
