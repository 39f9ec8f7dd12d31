"""Counts: run totals against the sum over every graph, closed forms, the paper's Fig. 3."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.opgraph import DTYPES
from workloads import (
    PRESETS,
    Counts,
    Precision,
    RunSpec,
    describe,
    format_describe,
    graph_counts,
    op_counts,
    phases,
    run_counts,
)

I8 = Precision.uniform("int8")


def two_layers(name: str):
    return dataclasses.replace(PRESETS[name], n_layers=2)


specs = st.one_of(
    st.builds(RunSpec,
              model=st.sampled_from(["gpt2", "llama2-70b", "gpt-j-6b"]).map(two_layers),
              batch=st.integers(1, 3), prompt_len=st.integers(1, 9), gen_len=st.integers(0, 7),
              precision=st.builds(Precision, *[st.sampled_from(DTYPES)] * 3),
              tp=st.sampled_from([1, 2])),
    st.builds(RunSpec, model=st.just(two_layers("bert-base")), batch=st.integers(1, 3),
              prompt_len=st.integers(1, 40), gen_len=st.just(0)),
)


@settings(max_examples=30, deadline=None)
@given(specs)
def test_run_counts_equal_the_sum_over_every_graph(spec: RunSpec) -> None:
    by_op: dict[str, Counts] = {}
    per_phase = []
    for G in phases(spec):
        per_phase.append(graph_counts(G))
        for n, c in op_counts(G).items():
            op = G.nodes[n]["op"]
            by_op[op] = by_op.get(op, Counts()) + c
    rc = run_counts(spec)
    assert rc.phases == tuple(per_phase)
    assert rc.by_op_type == by_op
    total = Counts()
    for c in per_phase:
        total += c
    assert rc.total == total
    for groups in (rc.by_op_type, rc.by_kind, rc.by_layer):
        s = Counts()
        for c in groups.values():
            s += c
        assert s == total


def test_counts_arithmetic() -> None:
    c = Counts(6, 3) + Counts(2, 1)
    assert (c, c * 2, c.arithmetic_intensity, Counts().arithmetic_intensity) == (
        Counts(8, 4), Counts(16, 8), 2.0, 0.0)


def test_gpt2_whole_run_matmul_flops_closed_form() -> None:
    m, B, P, gen = PRESETS["gpt2"], 2, 10, 20
    L, d, V = m.n_layers, m.d_model, m.vocab
    rc = run_counts(RunSpec(m, batch=B, prompt_len=P, gen_len=gen))
    per_token = 2 * L * 12 * d * d + L * 9 * d  # weights and biases, per fed position
    prefill = B * P * per_token + 2 * B * d * V + 4 * B * L * P * P * d
    decode = sum(B * per_token + 2 * B * d * V + 4 * B * L * (P + k) * d
                 for k in range(1, gen))
    assert rc.by_kind["matmul"].flops == prefill + decode


def test_weight_free_terms_are_linear_in_batch() -> None:
    base = RunSpec(PRESETS["llama2-7b"], prompt_len=16, gen_len=9)
    one, four = run_counts(base), run_counts(dataclasses.replace(base, batch=4))
    assert four.total.flops == 4 * one.total.flops
    for op in ("attn_score", "softmax", "attn_value", "residual", "activation", "rotary"):
        assert four.by_op_type[op].mops_bytes == 4 * one.by_op_type[op].mops_bytes


# -- the paper's Fig. 3: 8-bit weights and activations, batch 1 ----------------------------
# GPT-2 "iteratively generates the full sequence" of length L: prompt_len 1, gen_len L, i.e.
# L forward passes of one token attending over 1 .. L positions. BERT: one pass over L.
@pytest.mark.parametrize("L", [128, 256, 512])
def test_paper_fig3_shape(L: int) -> None:
    gpt = run_counts(RunSpec(PRESETS["gpt2"], prompt_len=1, gen_len=L, precision=I8))
    bert = run_counts(RunSpec(PRESETS["bert-base"], prompt_len=L, gen_len=0, precision=I8))
    assert len(gpt.phases) == L
    # about the same FLOPs: the same blocks; GPT-2 adds its LM head (a quarter of its FLOPs
    # here), BERT attends over all L positions for every token.
    assert 0.7 < gpt.total.flops / bert.total.flops < 1.6
    body = gpt.total.flops - gpt.by_op_type["lm_head"].flops
    assert 0.85 < body / bert.total.flops <= 1.0  # Fig. 3a: the encoder slightly higher
    assert gpt.total.mops_bytes > 24 * bert.total.mops_bytes  # dozens of times more MOPs
    assert 1.8 < gpt.total.arithmetic_intensity < 2.2  # matrix-vector at 1 byte per weight
    assert bert.total.arithmetic_intensity > 50


def test_describe_is_json_ready_and_readable() -> None:
    d = describe(RunSpec(PRESETS["llama2-70b"], prompt_len=128, gen_len=64, tp=8))
    assert json.loads(json.dumps(d)) == d
    assert d["params"] == 68_976_648_192 and d["tp"] == 8
    assert d["flops"] == sum(c["flops"] for c in d["by_op_type"].values())
    assert d["mops_bytes"] == sum(c["mops_bytes"] for c in d["by_kind"].values())
    assert d["phases"]["decode"]["steps"] == 63
    assert d["phases"]["prefill"]["flops"] + d["phases"]["decode"]["flops"] == d["flops"]
    assert d["kv_cache_bytes_per_device"] == 2 * 80 * 1 * 191 * 128 * 2  # one KV head each
    assert d["by_op_type"]["all_reduce"]["flops"] == 0
    assert len(d["by_layer"]) == 81
    text = format_describe(d)
    assert "llama2-70b" in text and "decode (63 steps)" in text and "all_reduce" in text
    bert = describe(RunSpec(PRESETS["bert-base"], prompt_len=128, gen_len=0))
    assert "decode" not in bert["phases"] and bert["phases"]["encode"]["tokens"] == 128
    assert "encode (128 tok)" in format_describe(bert)


@pytest.mark.parametrize("window", [0, 50, 301])
def test_closed_form_sums_equal_the_step_by_step_sum_across_a_window(monkeypatch, window) -> None:
    """run_counts sums each attention rule in closed form (counts.series); a window that fills
    mid-run puts a kink in the rule: the sum must still be exact, step for step."""
    import workloads.counts as counts
    model = dataclasses.replace(two_layers("mistral-7b"), sliding_window=window)
    spec = RunSpec(model, prompt_len=3, gen_len=700)
    closed = run_counts(spec)
    monkeypatch.setattr(counts, "EXACT_STEPS", 10**9)
    exact = run_counts(spec)
    assert closed.total == exact.total and closed.by_layer == exact.by_layer
    assert closed.by_op_type == exact.by_op_type
    assert closed.phases.decode == sum(exact.phases[1:], Counts())
    assert closed.phases[-1] == exact.phases[699] and len(closed.phases) == 700


def test_describe_of_ten_million_steps_is_a_closed_form() -> None:
    model = dataclasses.replace(two_layers("mistral-7b"), max_positions=1 << 24,
                                sliding_window=4096)
    d = describe(RunSpec(model, prompt_len=1, gen_len=10**7))
    dec = d["phases"]["decode"]
    assert dec["steps"] == 10**7 - 1
    assert dec["last_step"]["flops"] > dec["first_step"]["flops"]
    # past the window every step costs the same as the last
    assert dec["flops"] < dec["steps"] * dec["last_step"]["flops"]


def test_stated_model_limits_are_checked_before_anything_is_built() -> None:
    from workloads.model import LIMITS, WorkloadError
    with pytest.raises(WorkloadError, match="n_layers = 1,000,000,000: expected at most 1,024"):
        dataclasses.replace(PRESETS["gpt2"], n_layers=10**9)
    assert LIMITS["max_positions"] == 1 << 24
