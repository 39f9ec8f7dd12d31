"""Kernel fusion: which ops become one kernel, what a kernel reads and writes, and its cost."""

from __future__ import annotations

import dataclasses
import json

import networkx as nx
import pytest
from hypothesis import given, settings
from runs import HIER_DIR, simulate_spec
from test_graph import decoder_specs, two_layers

import workloads
from memwall import cli
from memwall.inputs import as_runtime
from sim import cost, load_hierarchy
from sim.errors import MemwallError
from sim.hierarchy_file import HierarchyError
from sim.opgraph import check_op_graph
from sim.runtime_file import RuntimeFileError, parse_runtime
from workloads import PRESETS, RunSpec, WorkloadError, build_phase, fuse, phases
from workloads.fusion import kernel_name


def layer0(K: nx.DiGraph) -> list[str]:
    return [n for n in nx.topological_sort(K) if K.nodes[n]["layer"] == 0]


def test_gpt2_layer_is_seven_kernels():
    K, _ = fuse(build_phase(RunSpec(two_layers("gpt2"), prompt_len=4, gen_len=3), 1))
    assert layer0(K) == ["h0.norm1", "h0.attn.qkv", "h0.attn.score+softmax+value",
                         "h0.attn.out+residual", "h0.norm2", "h0.mlp.up+act",
                         "h0.mlp.down+residual"]
    outside = [n for n, a in K.nodes(data=True) if a["layer"] == -1]
    assert sorted(outside) == ["embed+pos_embed", "final_norm", "lm_head"]
    a = K.nodes["h0.attn.out+residual"]
    assert (a["kind"], a["op"], a["dtype"]) == ("matmul", "attn_out+residual", "bf16")


def test_llama_fuses_rotary_into_qkv_and_gate_with_up():
    K, _ = fuse(build_phase(RunSpec(two_layers("llama2-70b"), prompt_len=4, gen_len=3), 1))
    assert layer0(K) == ["h0.norm1", "h0.attn.qkv+rotary", "h0.attn.score+softmax+value",
                         "h0.attn.out+residual", "h0.norm2", "h0.mlp.up+gate+act",
                         "h0.mlp.down+residual"]
    qkv = K.nodes["h0.attn.qkv+rotary"]
    # q and the new k leave the GEMM for the rotary epilogue only; v and rotated k are cached
    assert [t.name for t in qkv["writes"]] == ["h0.v_cache", "h0.attn.q_rot", "h0.k_cache"]
    mlp = K.nodes["h0.mlp.up+gate+act"]
    assert [t.name for t in mlp["reads"]].count("h0.norm2.out") == 1  # read once, by one GEMM


def test_bert_fuses_the_embedding_adds_and_post_norm_residuals():
    K, _ = fuse(build_phase(RunSpec(two_layers("bert-base"), prompt_len=8, gen_len=0), 0))
    assert "embed+pos_embed+type_embed" in K and "embed_norm" in K
    assert layer0(K) == ["h0.attn.qkv", "h0.attn.score+softmax+value", "h0.attn.out+residual",
                         "h0.norm1", "h0.mlp.up+act", "h0.mlp.down+residual", "h0.norm2"]
    assert "pooler+pooler.tanh" in K


def test_a_residual_after_an_all_reduce_stays_its_own_kernel():
    K, _ = fuse(build_phase(RunSpec(two_layers("llama2-70b"), prompt_len=4, gen_len=2, tp=2),
                            1))
    assert layer0(K) == ["h0.norm1", "h0.attn.qkv+rotary", "h0.attn.score+softmax+value",
                         "h0.attn.out", "h0.attn.all_reduce", "h0.attn.residual", "h0.norm2",
                         "h0.mlp.up+gate+act", "h0.mlp.down", "h0.mlp.all_reduce",
                         "h0.mlp.residual"]


def test_kernel_names():
    assert kernel_name(["h3.attn.out", "h3.attn.residual"]) == "h3.attn.out+residual"
    assert kernel_name(["h3.mlp.down", "h3.residual"]) == "h3.mlp.down+residual"
    assert kernel_name(["embed", "pos_embed"]) == "embed+pos_embed"
    assert kernel_name(["lm_head"]) == "lm_head"


def test_fused_attention_keeps_its_scores_on_chip():
    spec = RunSpec(two_layers("gpt2"), prompt_len=64, gen_len=2)
    G = build_phase(spec, 1)
    K, _ = fuse(G)
    core = K.nodes["h0.attn.score+softmax+value"]
    names = {t.name for t in (*core["reads"], *core["writes"])}
    assert names == {"h0.attn.q", "h0.k_cache", "h0.v_cache", "h0.attn.value.out"}
    parts = ("h0.attn.score", "h0.attn.softmax", "h0.attn.value")
    assert core["flops"] == sum(G.nodes[p]["flops"] for p in parts)
    assert [p[:3] for p in core["parts"]] == [
        (G.nodes[p]["kind"], G.nodes[p]["flops"], G.nodes[p]["dtype"]) for p in parts]
    unfused = sum(t.nbytes for p in parts for t in (*G.nodes[p]["reads"], *G.nodes[p]["writes"]))
    scores = G.nodes["h0.attn.score"]["writes"][0].nbytes  # written and read twice, as probs too
    assert sum(t.nbytes for t in (*core["reads"], *core["writes"])) == unfused - 4 * scores


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_fuses_to_a_dag_with_the_same_flops(name):
    model = dataclasses.replace(PRESETS[name], n_layers=2)
    spec = RunSpec(model, prompt_len=4, gen_len=0 if model.arch == "encoder" else 2)
    G = build_phase(spec, spec.n_phases - 1)
    K, _ = fuse(G)
    check_op_graph(K)
    assert K.number_of_nodes() < G.number_of_nodes()
    assert sum(a["flops"] for _, a in K.nodes(data=True)) == sum(
        a["flops"] for _, a in G.nodes(data=True))
    for _, a in K.nodes(data=True):
        if "parts" in a:
            assert a["flops"] == sum(p[1] for p in a["parts"])
    kv = {t.name for _, a in G.nodes(data=True) for t in a["writes"] if t.cls == "kv_cache"}
    assert kv == {t.name for _, a in K.nodes(data=True) for t in a["writes"]
                  if t.cls == "kv_cache"}


@settings(max_examples=20, deadline=None)
@given(decoder_specs())
def test_decode_kernels_match_fusing_a_fresh_build_of_each_step(spec):
    for k, K in enumerate(phases(spec, "fused")):
        F, _ = fuse(build_phase(spec, k))
        assert dict(K.nodes(data=True)) == dict(F.nodes(data=True))
        assert set(K.edges) == set(F.edges) and K.graph == F.graph


def test_phases_refuses_an_unknown_fusion():
    with pytest.raises(WorkloadError, match="fusion = 'all': expected one of none, fused"):
        next(phases(RunSpec(PRESETS["gpt2"], prompt_len=1, gen_len=0), "all"))


def test_a_kernel_computes_for_the_sum_of_its_parts():
    h = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR])
    rt = as_runtime(None, h)
    G = build_phase(RunSpec(two_layers("llama2-7b"), prompt_len=128, gen_len=1), 0)
    K, _ = fuse(G)
    parts = ("h0.mlp.up", "h0.mlp.gate", "h0.mlp.act")
    want = sum(cost.op_compute_s(G.nodes[p], h.compute, rt) for p in parts)
    assert cost.op_compute_s(K.nodes["h0.mlp.up+gate+act"], h.compute, rt) == pytest.approx(want)
    assert want > cost.op_compute_s(G.nodes["h0.mlp.up"], h.compute, rt) * 2  # waves per GEMM


def test_a_fused_run_pays_one_dispatch_per_kernel():
    h = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    spec = RunSpec(PRESETS["gpt2"], prompt_len=16, gen_len=8)
    fused, unfused = simulate_spec(spec, h), simulate_spec(spec, h, fusion="none")
    assert (fused["fusion"], unfused["fusion"]) == ("fused", "none")
    assert (fused["n_ops"], unfused["n_ops"]) == (8 * (12 * 7 + 3), 8 * (12 * 12 + 4))
    launch = as_runtime(None, h).launch_s
    assert fused["stall_s"]["dispatch"] == pytest.approx(fused["n_ops"] * launch)
    # MOPs are the model's (each op at its own boundary); fusion moves fewer bytes
    assert (fused["flops"], fused["mops_bytes"]) == (unfused["flops"], unfused["mops_bytes"])
    assert fused["bytes_by_level"]["l2"] < unfused["bytes_by_level"]["l2"]
    # fewer launches and no score or epilogue round trips: a fused decode step is faster
    assert fused["decode_s_per_token"] < 0.8 * unfused["decode_s_per_token"]


def test_fusion_in_the_runtime_file_and_its_errors():
    text = "schema_version: 1\nkernels: {launch: 1 us}\nfusion:\n  epilogues: true\n" \
           "  attention: true\n"
    assert parse_runtime(text, "rt").fusion == "fused"
    assert parse_runtime(text.replace("true", "false"), "rt").fusion == "none"
    over = parse_runtime(text, "rt").override(["fusion.epilogues=false"])
    assert (over.fuse_epilogues, over.fuse_attention, over.fusion) == (False, True, "attention")
    with pytest.raises(RuntimeFileError) as e:
        parse_runtime(text.replace("  attention: true", "  attention: yes please"), "rt")
    msg = str(e.value)
    assert msg.startswith("rt:5: fusion.attention:") and "true or false" in msg
    assert "\n" not in msg


def test_cli_fusion_flag_overrides_the_file(capsys):
    argv = ["--workload", "gpt2", "--hier", "hbm_accel.yaml", "--prompt-len", "8",
            "--gen-len", "4", "--json", "-"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["fusion"] == "fused"
    assert cli.main([*argv, "--fusion", "none"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["fusion"] == "none" and s["n_ops"] == 4 * 148
    assert cli.main([*argv, "--fusion", "some"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fusion: invalid choice: 'some'" in err


def test_report_names_the_kernel_granularity(capsys):
    assert cli.main(["--workload", "gpt2", "--hier", "a100_80gb.yaml", "--prompt-len", "8",
                     "--gen-len", "2", "--runtime", "eager"]) == 0
    assert "one kernel per op" in capsys.readouterr().out.splitlines()[0]


def test_bundled_runtimes_fuse_except_eager_pytorch_ggml_and_dataflow():
    hiers = {p.stem: load_hierarchy(p.stem, search_dirs=[HIER_DIR])
             for p in sorted(HIER_DIR.glob("*.yaml"))}  # every bundled file
    assert len(hiers) >= 11
    for name, h in hiers.items():
        rt = as_runtime(None, h)
        unfused = ("eager", "ggml", "dataflow")  # dataflow (sram_only): no kernel launches
        assert rt.fusion == ("none" if rt.name in unfused else "fused"), name
    assert {n for n, h in hiers.items() if as_runtime(None, h).fusion == "none"} >= {
        "xeon_gold_6242"}
    assert as_runtime(None, hiers["h200"]).fusion == "fused"
    assert as_runtime("eager", hiers["a100_80gb"]).fusion == "none"


def test_errors_are_memwall_errors():
    assert issubclass(HierarchyError, MemwallError) and workloads.FUSIONS == ("none", "fused")
