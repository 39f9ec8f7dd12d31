"""Energy: charged from the records by sim.energy, by hand on the toy; refused like any figure."""

from __future__ import annotations

import dataclasses
import itertools
import json

import h5py
import pytest
import yaml
from runs import HIER_DIR
from toy import chain, toy_energy, toy_hierarchy, toy_options

import memwall
import workloads
from memwall import sweeps
from memwall.result import summary_keys
from memwall.sweep_file import SweepError, parse_sweep
from memwall.sweep_results import pareto, verdict
from sim import Summary, energy, inspect_trace, simulate, simulate_analytic, tensor_footprint
from sim.hierarchy_file import HierarchyError, hierarchy_from_data
from sim.opgraph import DTYPES
from sim.units import parse_quantity

US = 1e-6
FP32 = {"precision": {"weights": "fp32", "activations": "fp32"}, "tp": 1, "batch": 1,
        "gen_len": 1}
KEYS = ("energy_j", "energy_j_by", "joules_per_token", "average_power_w")


def summarise(phases, hier, engine=simulate, meta=FP32, **opts):
    records = []
    engine(phases, hier, tensor_footprint(phases[-1]), records.append, toy_options(**opts))
    s = Summary(hier)
    for r in records:
        s.add(r)
    return records, s.result(dict(meta))


def test_energy_by_level_is_bytes_times_energy_per_byte_plus_static_power_times_time():
    hier = dataclasses.replace(toy_hierarchy(), energy=toy_energy())
    records, s = summarise([chain(1)], hier)
    # one matmul: 2 MFLOP; sram 402 kB, dram 400 kB crossed; 5.1 us (1 dispatch, 0.1 latency,
    # 4 transfer); sram leaks 1 W/MB x 1 MB, dram 0.5 W, the board idles at 10 W
    assert records[0].bytes == (402_000, 400_000)
    t = 5.1 * US
    want = {"compute": 2e6 * 1e-12,
            "sram": 402_000 * 1e-12 + 1.0 * t,
            "dram": 400_000 * 20e-12 + 0.5 * t,
            "interconnect": 0.0,
            "static": 10.0 * t}
    assert list(s["energy_j_by"]) == list(want)
    for k, v in want.items():
        assert s["energy_j_by"][k] == pytest.approx(v, rel=1e-12, abs=1e-18), k
    assert s["energy_j"] == pytest.approx(sum(want.values()), rel=1e-12)
    assert s["joules_per_token"] == pytest.approx(s["energy_j"], rel=1e-12)  # one token
    assert s["average_power_w"] == pytest.approx(s["energy_j"] / t, rel=1e-9)


def test_a_tensor_parallel_group_pays_every_device_and_the_links():
    t = energy.Tariff(levels=("hbm",), matmul_j_per_flop=1e-12, vector_j_per_flop=2e-12,
                      access_j_per_byte=(10e-12,), leakage_w=(1.0,), idle_w=50.0,
                      link_j_per_byte=40e-12, devices=4)
    # an all-reduce of 1000 bytes (it reads and writes one buffer: MOPs 2000) over 4 devices
    # sends 2 (4-1)/4 x 1000 = 1500 bytes out of each
    by = energy.total(t, {"kind": ["collective", "vector"], "flops": [0, 100],
                          "bytes": [[2000], [500]], "mops_bytes": [2000, 1000],
                          "elapsed_s": [1e-6, 2e-6]})
    assert by == pytest.approx({"compute": 4 * 100 * 2e-12,
                                "hbm": 4 * (2500 * 10e-12 + 1.0 * 3e-6),
                                "interconnect": 4 * 1500 * 40e-12,
                                "static": 4 * 50.0 * 3e-6}, rel=1e-12)


def test_a_hierarchy_without_figures_reports_none_not_zero():
    _, s = summarise([chain(1)], toy_hierarchy())
    assert all(k in s and s[k] is None for k in KEYS)
    d = yaml.safe_load((HIER_DIR / "hbm_accel.yaml").read_text())
    del d["energy"]
    plain = memwall.simulate("gpt2", hierarchy_from_data(d), prompt_len=4, gen_len=2).to_dict()
    assert list(plain) == list(summary_keys()) and all(plain[k] is None for k in KEYS)


def test_a_bundled_run_reports_energy_in_its_json_and_report():
    r = memwall.simulate("gpt2", "hbm_accel", prompt_len=4, gen_len=2)
    d = r.to_dict()
    assert list(d["energy_j_by"]) == ["compute", "registers", "l1", "l2", "hbm",
                                      "interconnect", "static"]
    assert d["energy_j"] == pytest.approx(sum(d["energy_j_by"].values()), rel=1e-12)
    assert d["joules_per_token"] == pytest.approx(d["energy_j"] / 2, rel=1e-12)
    assert d["average_power_w"] == pytest.approx(d["energy_j"] / d["total_s"], rel=1e-12)
    # static = idle power x time, exactly as the file gives it (70 W)
    assert d["energy_j_by"]["static"] == pytest.approx(70.0 * d["total_s"], rel=1e-9)
    assert "where the energy went" in r.report()
    assert "where the energy went" not in memwall.simulate(
        "gpt2", toy_hierarchy(), prompt_len=4, gen_len=2, runtime="tensorrt-llm").report()


def test_a_bigger_sram_that_leaks_saves_time_and_costs_energy():
    # gpt2's weights fit the 512 MiB l2 but not the 50 MiB one; at 0.5 W/MiB of leakage the
    # time the bigger l2 saves does not pay for what it leaks; at the file's 2 mW/MiB it does
    leaky = {"energy.memory.l2.static": "0.5 W/MiB"}
    runs = {(name, s): memwall.simulate("gpt2", name, prompt_len=8, gen_len=4,
                                        overrides=leaky if s else {})
            for name in ("hbm_accel", "hbm_accel_big_l2") for s in (False, True)}
    small, big = runs["hbm_accel", True], runs["hbm_accel_big_l2", True]
    assert big.total_s < small.total_s
    assert big.energy_j > small.energy_j
    assert big.energy_j_by["l2"] > small.energy_j_by["l2"]
    assert big.energy_j_by["hbm"] < small.energy_j_by["hbm"]
    assert runs["hbm_accel_big_l2", False].energy_j < runs["hbm_accel", False].energy_j


@pytest.mark.parametrize(("path", "value", "says"), [
    ("energy.memory.hbm.access", "3.9 pJ", 'unknown unit "pJ"'),
    ("energy.memory.hbm.access", "3.9 pj/bit", 'did you mean "pJ/bit"'),
    ("energy.idle", "70 J", "expected a power"),
    ("energy.memory.l2.static", "2 pJ/B", "is an energy per byte; expected a power per"),
    ("energy.compute.bf16", "-1 pJ/FLOP", "is negative"),
    ("energy.interconnect", "5 W", "is a power; expected an energy per byte"),
])
def test_bad_energy_figures_are_refused_in_one_located_line(path, value, says):
    with pytest.raises(HierarchyError) as e:
        memwall.simulate("gpt2", "hbm_accel", overrides={path: value}, gen_len=1)
    msg = str(e.value)
    assert "\n" not in msg and path in msg and says in msg


def test_an_energy_section_must_cover_every_level_and_precision():
    d = yaml.safe_load((HIER_DIR / "hbm_accel.yaml").read_text())
    del d["energy"]["memory"]["l1"]
    with pytest.raises(HierarchyError, match="energy.memory.l1: missing required key"):
        hierarchy_from_data(d)
    d = yaml.safe_load((HIER_DIR / "hbm_accel.yaml").read_text())
    del d["energy"]["compute"]["fp8"]
    with pytest.raises(HierarchyError, match="energy.compute.fp8: missing required key"):
        hierarchy_from_data(d)


def test_energy_units_are_exact():
    assert parse_quantity("1 pJ/bit", "energy_per_byte") == 8e-12
    assert parse_quantity("3.9 pJ/bit", "energy_per_byte") == 3.9 * 8e-12
    assert parse_quantity("2 mW/MiB", "power_per_size") == 2e-3 / 2**20
    assert parse_quantity("0.5 pJ/FLOP", "energy_per_flop") == 0.5e-12
    assert parse_quantity("7.7 kW", "power") == 7700.0


def test_des_and_analytic_energy_agree_with_overlap_off():
    hier = dataclasses.replace(toy_hierarchy(), energy=toy_energy())
    phases = [chain(4, step=k) for k in range(3)]
    _, des = summarise(phases, hier, overlap=False)
    _, ana = summarise(phases, hier, engine=simulate_analytic, overlap=False)
    for k, v in des["energy_j_by"].items():
        assert ana["energy_j_by"][k] == pytest.approx(v, rel=1e-9, abs=1e-18), k
    a = memwall.simulate("gpt2", "h100_sxm", prompt_len=4, gen_len=2, overlap=False)
    b = memwall.simulate("gpt2", "h100_sxm", prompt_len=4, gen_len=2, overlap=False,
                         engine="analytic")
    assert b.energy_j == pytest.approx(a.energy_j, rel=1e-9)


def test_a_trace_carries_each_records_energy_and_reads_back_the_same_totals(tmp_path):
    path = tmp_path / "t.h5"
    r = memwall.simulate("gpt2", "hbm_accel", prompt_len=4, gen_len=2, trace=path)
    with h5py.File(path) as f:
        j = f["energy/j"][:]
        parts = json.loads(f["energy/j"].attrs["parts"])
        assert j.shape == (f["records/op"].shape[0], len(parts))
    assert parts == list(r.energy_j_by)
    for i, k in enumerate(parts):
        assert j[:, i].sum() == pytest.approx(r.energy_j_by[k], rel=1e-9), k
    back = inspect_trace(str(path))["summary"]
    assert back["energy_j"] == pytest.approx(r.energy_j, rel=1e-12)


def test_the_matmul_precision_is_the_op_graphs():
    for w, a in itertools.product(DTYPES, DTYPES):
        assert energy.matmul_dtype({"weights": w, "activations": a}) == \
            workloads.compute_dtype(w, a)


def _row(t: float, jpt: float, runtime: str) -> dict[str, object]:
    return {"workload": "w", "batch": 1, "prompt_len": 1, "gen_len": 2, "weight_dtype": "bf16",
            "act_dtype": "bf16", "kv_dtype": "bf16", "tp": 1, "runtime": runtime,
            "routing": None, "seed": None, "status": "ok", "decode_s_per_token": t,
            "throughput_tokens_per_s": 1 / t, "total_s": 2 * t, "energy_j": 2 * jpt,
            "joules_per_token": jpt}


def test_energy_objectives_put_a_slower_frugal_design_on_the_front():
    axes = {"runtime": ["a", "b"]}
    rows = [_row(1.0, 5.0, "a"), _row(2.0, 1.0, "b")]
    assert pareto(rows, axes) == {0}
    assert pareto(rows, axes, ["joules_per_token"]) == {0, 1}
    assert pareto(rows, axes, ["edp"]) == {0, 1}  # 10 J x 2 s against 2 J x 4 s
    assert "joules_per_token (less)" in verdict(rows, axes, objectives=["joules_per_token"])


def test_a_sweep_names_its_energy_objectives_and_runs_them(tmp_path):
    text = """\
base: hbm_accel.yaml
engine: analytic
objectives: [joules_per_token, edp]
workloads:
  - {workload: gpt2, prompt_len: 4, gen_len: 2}
grid:
  memory.l2.capacity: ["50 MiB", "512 MiB"]
  energy.memory.l2.static: ["2 mW/MiB", "0.5 W/MiB"]
"""
    assert parse_sweep(text, "s.yaml").objectives == ("joules_per_token", "edp")
    with pytest.raises(SweepError, match=r"s.yaml:3: objectives: .*joule.* expected one of"):
        parse_sweep(text.replace("edp]", "joule]"), "s.yaml")
    bare = tmp_path / "bare.yaml"
    d = yaml.safe_load((HIER_DIR / "hbm_accel.yaml").read_text())
    del d["energy"]
    bare.write_text(yaml.safe_dump(d))
    with pytest.raises(SweepError, match="need energy figures"):
        sweeps.resolve(parse_sweep(text.replace("hbm_accel.yaml", str(bare)), "s.yaml"))
    path = tmp_path / "s.yaml"
    path.write_text(text)
    got = sweeps.sweep(path, tmp_path / "out", workers=1)
    rows = {(r["memory.l2.capacity"], r["energy.memory.l2.static"]): r for r in got.rows}
    big_leaky = rows["512 MiB", "0.5 W/MiB"]
    assert big_leaky["joules_per_token"] > rows["50 MiB", "0.5 W/MiB"]["joules_per_token"]
    assert "edp (less)" in got.verdict


def test_a_precision_the_device_lacks_is_charged_where_it_computes() -> None:
    from sim import energy

    # the Xeon Gold 6242 has no bf16 units: a bf16 matmul computes, and is charged, as fp32
    h = memwall.hierarchy("xeon_gold_6242")
    assert "bf16" not in h.compute.peak_flops_per_s and h.energy is not None
    bf16 = {"weights": "bf16", "activations": "bf16", "kv_cache": "bf16"}
    t = energy.tariff(h, bf16, 1)
    assert t.matmul_j_per_flop == h.energy.matmul_j_per_flop["fp32"]
    assert memwall.simulate("gpt2", h, prompt_len=8, gen_len=2).energy_j_by["compute"] > 0
