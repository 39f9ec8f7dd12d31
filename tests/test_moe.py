"""Mixtures of experts in the simulation: routing, bytes read per step by hand, placement of
every expert, caches that see them, routing files, and the flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runs import HIER_DIR, simulate_spec

import memwall
from memwall import cli
from sim import load_hierarchy, tensor_footprint
from sim.errors import MemwallError
from sim.memory import Memory
from workloads import (
    PRESETS,
    ModelConfig,
    Routing,
    RoutingError,
    RunSpec,
    build_phase,
    describe,
    final_phase,
    parse_routing,
)
from workloads.routing import expected_experts

MIXTRAL = PRESETS["mixtral-8x7b"]
EXPERT_BYTES = 3 * 4096 * 14336 * 2  # gate, up, down of one Mixtral expert in bf16


def mixtral(layers: int = 2) -> ModelConfig:
    return dataclasses.replace(MIXTRAL, n_layers=layers)


def tiny_moe(**changes) -> ModelConfig:
    """A small mixture of experts whose runs take milliseconds."""
    shape = dict(name="tiny-moe", n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_head=16,
                 d_ff=128, d_ff_expert=128, vocab=512, n_experts=16, top_k=2)
    return dataclasses.replace(MIXTRAL, **{**shape, **changes})


def expert_reads(G, layer: int = 0) -> set[int]:
    """The experts whose weights layer `layer`'s expert GEMMs read in graph G."""
    names = {t.name for op in ("up", "down") for t in G.nodes[f"h{layer}.moe.{op}"]["reads"]
             if t.cls == "weight"}
    return {int(n.split(".")[2][1:]) for n in names}


# -- routing -------------------------------------------------------------------------------
def test_expected_number_of_distinct_experts() -> None:
    assert expected_experts(8, 2, 1) == 2  # one token: exactly top_k
    assert expected_experts(8, 2, 4) == 5  # 8 (1 - 0.75^4) = 5.47
    assert expected_experts(8, 2, 64) == 8  # every expert
    assert expected_experts(256, 8, 64) == round(256 * (1 - (1 - 8 / 256) ** 64)) == 222
    assert expected_experts(64, 6, 1) == 6 and expected_experts(60, 4, 3) == 11  # 10.98


@pytest.mark.parametrize("batch,n", [(1, 2), (64, 8)])
def test_uniform_decode_step_reads_the_expected_experts_by_hand(batch: int, n: int) -> None:
    spec = RunSpec(mixtral(), batch=batch, prompt_len=4, gen_len=3)
    G = build_phase(spec, 1)
    for layer in (0, 1):
        up, down = G.nodes[f"h{layer}.moe.up"], G.nodes[f"h{layer}.moe.down"]
        weights = [t for a in (up, down) for t in a["reads"] if t.cls == "weight"]
        assert len(expert_reads(G, layer)) == n
        assert sum(t.nbytes for t in weights) == n * EXPERT_BYTES  # 2 x 352 MB at batch 1
        # FLOPs: every token's k = 2 experts, whichever they are
        assert up["flops"] + down["flops"] == 2 * batch * 2 * 3 * 4096 * 14336
        assert [p[3][0].shape[0] for p in up["parts"]] == [batch * 2 // n] * n  # rows each
    # the prefill routes every prompt token: 4 x 64 tokens reach all 8 experts
    assert len(expert_reads(build_phase(spec, 0))) == expected_experts(8, 2, 4 * batch)


@pytest.mark.parametrize("batch,n", [(1, 2), (64, 8)])
def test_uniform_bytes_read_per_decode_step_in_the_simulation(batch: int, n: int) -> None:
    hier = load_hierarchy("hbm_accel_tiered.yaml", search_dirs=[HIER_DIR])
    spec = RunSpec(mixtral(), batch=batch, prompt_len=4, gen_len=4)
    r = memwall.simulate(spec.model, hier, batch=batch, prompt_len=4, gen_len=4,
                         fusion="none", records=True)
    cols = r.records
    expert_ops = np.array([op.endswith((".moe.up", ".moe.down")) for op in cols["op"]])
    for step in (1, 2, 3):  # weights from hbm (they fit), activations in l2
        sel = expert_ops & (cols["step"] == step)
        assert cols["bytes.hbm"][sel].sum() == 2 * n * EXPERT_BYTES  # 2 layers


def test_routing_is_seeded_and_reproducible() -> None:
    def chosen(routing: Routing, step: int = 2) -> list[set[int]]:
        spec = RunSpec(mixtral(4), batch=2, prompt_len=3, gen_len=4, routing=routing)
        G = build_phase(spec, step)
        return [expert_reads(G, layer) for layer in range(4)]

    assert chosen(Routing(seed=1)) == chosen(Routing(seed=1))
    assert chosen(Routing(seed=1)) != chosen(Routing(seed=2))
    assert chosen(Routing("zipf", 1.0, 3)) == chosen(Routing("zipf", 1.0, 3))
    assert chosen(Routing("zipf", 1.0, 3), 1) != chosen(Routing("zipf", 1.0, 3), 3)


def test_zipf_routing_concentrates_on_a_hot_set() -> None:
    r = Routing("zipf", 1.5, seed=0)
    layers = tuple(range(4))
    hits = np.zeros((4, 64))
    for step in range(1, 200):
        for j, (ids, counts) in enumerate(r.route(step, 1, layers, 64, 2)):
            assert len(ids) == 2 and counts.tolist() == [1, 1]
            hits[j, ids] += 1
    top4 = np.sort(hits, axis=1)[:, -4:].sum(axis=1) / hits.sum(axis=1)
    assert (top4 > 0.5).all()  # 4 of 64 experts take most reads
    assert len({int(np.argmax(h)) for h in hits}) > 1  # each layer its own hot experts
    flat = Routing("zipf", 0.0, seed=0).route(5, 4096, layers, 64, 2)
    assert all(len(ids) == 64 and abs(c.mean() - 128) < 1e-9 for ids, c in flat)


# -- placement and caches ------------------------------------------------------------------
@pytest.mark.parametrize("routing", [Routing(), Routing("zipf", 1.2, 4)])
def test_every_expert_gets_a_home_and_the_coldest_spill_first(routing: Routing) -> None:
    hier = load_hierarchy("hbm_accel_tiered.yaml", search_dirs=[HIER_DIR])
    spec = RunSpec(MIXTRAL, prompt_len=4, gen_len=2, routing=routing)
    footprint = tensor_footprint(final_phase(spec))
    experts = [n for n in footprint if ".moe.e" in n]
    assert len(experts) == 32 * 8 * 3  # every expert of every layer, read or not
    mem = Memory(hier, footprint)
    lpddr = len(hier.levels) - 1
    spilled = {n for n, (cls, _) in footprint.items() if cls == "weight"
               and any(c[0] == lpddr for c in mem.homes[n])}
    # 93.4 GB of weights in an 80 GB HBM: some 38 experts go to lpddr, the coldest: rank 8
    # of every layer (uniform: the highest id), then rank 7 of the last layers
    assert spilled and all(".moe.e" in n for n in spilled)
    rank = {(layer, int(e)): r for layer, order in zip(MIXTRAL.moe_layers, routing.popularity(
        MIXTRAL.moe_layers, 8), strict=True) for r, e in enumerate(order)}
    ranks = {rank[(int(n.split(".")[0][1:]), int(n.split(".")[2][1:]))] for n in spilled}
    assert ranks <= {6, 7} and 7 in ranks


@st.composite
def cache_runs(draw):
    skew = draw(st.sampled_from([0.8, 1.2, 2.0]))
    seed = draw(st.integers(0, 3))
    sizes = sorted(draw(st.lists(st.integers(1, 40), min_size=2, max_size=4, unique=True)))
    return skew, seed, sizes


@settings(max_examples=8, deadline=None)
@given(cache_runs())
def test_skewed_routing_hit_rate_grows_with_the_cache(case) -> None:
    """An LRU in front of the experts' home: a bigger cache never hits less (LRU is a stack
    algorithm), and a skewed router's hot experts stay in a cache that holds a few."""
    skew, seed, sizes = case
    m = tiny_moe()
    expert = 3 * 64 * 128 * 2  # bytes
    spec = RunSpec(m, prompt_len=1, gen_len=40, routing=Routing("zipf", skew, seed))
    hit_rates = []
    for n_experts_cached in sizes:
        hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR], overrides=(
            f"memory.l2.capacity={n_experts_cached * expert + 16384} B",))
        s = simulate_spec(spec, hier, engine="analytic", fusion="none")
        hit_rates.append(1 - s["bytes_by_level"]["hbm"] / s["bytes_by_level"]["l2"])
    assert all(b >= a - 1e-12 for a, b in zip(hit_rates, hit_rates[1:], strict=False))
    if sizes[0] <= 4 and sizes[-1] >= 16:  # room for the hot experts of both layers
        assert hit_rates[-1] > hit_rates[0] + 0.3


def test_a_skewed_router_hits_more_than_a_uniform_one() -> None:
    m = tiny_moe()
    expert = 3 * 64 * 128 * 2
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR], overrides=(
        f"memory.l2.capacity={8 * expert + 16384} B",))  # room for 8 of 16 experts a layer
    hbm = {}
    for label in ("uniform", "zipf:1.5"):
        spec = RunSpec(m, prompt_len=1, gen_len=60, routing=parse_routing(label, 1))
        hbm[label] = simulate_spec(spec, hier, engine="analytic")["bytes_by_level"]["hbm"]
    assert hbm["zipf:1.5"] < 0.8 * hbm["uniform"]


# -- tensor parallelism --------------------------------------------------------------------
def test_experts_split_as_megatron_does() -> None:
    one = build_phase(RunSpec(mixtral(), prompt_len=4, gen_len=2), 1)
    two = build_phase(RunSpec(mixtral(), prompt_len=4, gen_len=2, tp=2), 1)
    w1, w2 = one.graph["weight_bytes"], two.graph["weight_bytes"]
    assert w2["h0.moe.e3.up.weight"] * 2 == w1["h0.moe.e3.up.weight"]
    assert w2["h0.moe.router.weight"] == w1["h0.moe.router.weight"]  # replicated
    assert "h0.moe.all_reduce" in two and "h0.moe.all_reduce" not in one
    assert two.nodes["h0.moe.up"]["flops"] * 2 == one.nodes["h0.moe.up"]["flops"]
    with pytest.raises(MemwallError, match="d_ff_expert = 100; expected a tp that divides"):
        RunSpec(tiny_moe(n_heads=8, n_kv_heads=8, d_head=8, d_ff_expert=100), prompt_len=4,
                gen_len=2, tp=8)


# -- routing files -------------------------------------------------------------------------
def trace_text(steps: dict[int, int], layers=(0, 1), k: int = 2, pick=lambda s, i, t: (0, 1)):
    lines = ["step,layer,token," + ",".join(["expert"] * k)]
    for step, tokens in steps.items():
        for layer in layers:
            for t in range(tokens):
                lines.append(",".join(map(str, (step, layer, t, *pick(step, layer, t)))))
    return "\n".join(lines) + "\n"


def test_a_routing_file_decides_the_experts_read(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(trace_text({0: 6, 1: 2, 2: 2}, pick=lambda s, i, t: (
        (s + t) % 16, (s + t + 5 + i) % 16)))
    r = memwall.simulate(tiny_moe(), "hbm_accel", batch=2, prompt_len=3, gen_len=3,
                         routing_file=str(path))
    assert (r.routing, r.seed) == ("file", None)
    assert r.provenance["routing_path"] == str(path.resolve())
    req = memwall.request(tiny_moe(), "hbm_accel", batch=2, prompt_len=3, gen_len=3,
                          routing_file=str(path))
    G = build_phase(req.spec, 2)
    assert expert_reads(G, 1) == {2, 3, 8, 9}  # tokens 0 and 1 of step 2, layer 1


@pytest.mark.parametrize("text,message", [
    ("layer,step,token,expert\n", r"trace.csv:1: header .*expected step,layer,token,expert"),
    ("step,layer,token,expert,expert\n0,0,0,1,x\n", r"trace.csv:2: .*expected 5 integers"),
    ("step,layer,token,expert,expert\n0,0,0,1,1\n", r"trace.csv:2: experts \[1, 1\]: "
                                                    "expected 2 distinct ids"),
    ("step,layer,token,expert,expert\n0,0,1,1,2\n", r"trace.csv:2: token 1: expected 0"),
])
def test_routing_file_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(RoutingError, match=message):
        memwall.request(tiny_moe(), "hbm_accel", prompt_len=1, gen_len=2,
                        routing_file=str(path))


@pytest.mark.parametrize("steps,k,pick,message", [
    ({0: 1}, 2, lambda s, i, t: (0, 1), "no rows for step 1; the run has steps 0 .. 1"),
    ({0: 1, 1: 1}, 3, lambda s, i, t: (0, 1, 2), "3 experts per token; 'tiny-moe' routes"),
    ({0: 1, 1: 2}, 2, lambda s, i, t: (0, 1), "step 1, layer 0: 2 tokens; the run feeds 1"),
    ({0: 1, 1: 1}, 2, lambda s, i, t: (0, 16), "expert 16; 'tiny-moe' has experts 0 .. 15"),
])
def test_routing_file_must_cover_the_run(tmp_path: Path, steps, k, pick, message) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(trace_text(steps, k=k, pick=pick))
    with pytest.raises(MemwallError, match=message):
        memwall.request(tiny_moe(), "hbm_accel", prompt_len=1, gen_len=2,
                        routing_file=str(path))


# -- flags and the summary -----------------------------------------------------------------
def test_routing_flags_and_summary_keys(capsys) -> None:
    argv = ["--workload", "mixtral-8x7b", "--hier", "hbm_accel_tiered.yaml", "--prompt-len",
            "2", "--gen-len", "2", "--engine", "analytic", "--routing", "zipf:1.2", "--seed",
            "3", "--json", "-"]
    assert cli.main(argv) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["routing"], s["seed"], s["params"]) == ("zipf:1.2", 3, 46_702_792_704)
    keys = list(s)
    assert keys.index("precision") < keys.index("routing") < keys.index("seed")
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml", "--prompt-len", "2",
                     "--gen-len", "2", "--json", "-"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert (dense["routing"], dense["seed"]) == (None, None)
    assert cli.main([*argv[:-2], "--routing", "zipf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "routing 'zipf': expected uniform or zipf:S" in err
    assert cli.main([*argv[:-2], "--seed", "-1"]) == 2
    assert "seed = -1: expected an integer >= 0" in capsys.readouterr().err


def test_describe_shows_total_and_active_parameters_and_kv_per_token(capsys) -> None:
    assert cli.main(["describe", "--workload", "mixtral-8x7b", "--prompt-len", "8",
                     "--gen-len", "2", "--json", "-"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["params"], d["active_params"]) == (46_702_792_704, 12_879_925_248)
    assert d["kv_bytes_per_token"] == 32 * 2 * 8 * 128 * 2
    assert d["routing"] == {"routing": "uniform", "seed": 0}
    assert cli.main(["describe", "--workload", "mixtral-8x7b", "--prompt-len", "8",
                     "--gen-len", "2"]) == 0
    text = capsys.readouterr().out
    assert "params 46.7 G (active 12.9 G per token)" in text and "131 kB per token" in text


def test_sweep_workloads_take_the_routing(tmp_path: Path) -> None:
    from memwall.sweep_file import SweepError, parse_sweep

    text = ("base: hbm_accel.yaml\nworkloads:\n"
            "  - {workload: mixtral-8x7b, routing: 'zipf:1.2', seed: 4}\n"
            "  - {workload: mixtral-8x7b, routing_file: traces/a.csv}\n"
            "grid:\n  memory.l2.capacity: ['50 MiB']\n")
    sweep = parse_sweep(text, str(tmp_path / "s.yaml"))
    a, b = sweep.workloads
    assert (a.routing, a.seed, a.settings()["routing_file"]) == ("zipf:1.2", 4, None)
    assert b.routing_file == str(tmp_path / "traces" / "a.csv")  # beside the sweep file
    assert a.weight_dtype is None  # the model's, else bf16
    with pytest.raises(SweepError, match=r"s.yaml:3: workloads\[0\].seed"):
        parse_sweep(text.replace("seed: 4", "seed: -4"), str(tmp_path / "s.yaml"))


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v2-lite", "gemma2-9b"])
def test_accounting_and_engines_agree_on_the_new_families(name: str) -> None:
    m = dataclasses.replace(PRESETS[name], n_layers=2, **(
        {"dense_layers": 1} if PRESETS[name].dense_layers else {}))
    kw = dict(batch=4, prompt_len=6, gen_len=5, routing="zipf:1.1", fusion="none")
    des = memwall.simulate(m, "hbm_accel_tiered", prefetch_depth=0, **kw)
    analytic = memwall.simulate(m, "hbm_accel_tiered", engine="analytic", **kw)
    assert des.total_s == pytest.approx(analytic.total_s, rel=0.01)
    ahead = memwall.simulate(m, "hbm_accel_tiered", **kw)
    assert ahead.total_s >= ahead.bound_s * (1 - 1e-9)
    assert ahead.compute_s + sum(ahead.stall_s.values()) == pytest.approx(ahead.total_s,
                                                                          rel=1e-6)
    assert (ahead.flops, ahead.mops_bytes) == (des.flops, des.mops_bytes)
    fused = memwall.simulate(m, "hbm_accel_tiered", **{**kw, "fusion": "fused"})
    counted = describe(memwall.request(m, "hbm_accel", **{k: v for k, v in kw.items()
                                                         if k != "fusion"}).spec)
    assert (counted["flops"], counted["mops_bytes"]) == (des.flops, des.mops_bytes) == (
        fused.flops, fused.mops_bytes)  # parts at their own boundary, fused or not
