"""The command line and whole runs on bundled hierarchies: what a user sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runs import HIER_DIR, simulate_spec

import memwall
import workloads
from memwall import cli
from sim import load_hierarchy

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "gpt2_hbm_accel.json"
GOLDEN_UNFUSED = GOLDEN.with_name("gpt2_hbm_accel_unfused.json")
SHORT = ["--prompt-len", "16", "--gen-len", "8"]


def summary(capsys, *argv: str) -> dict:
    assert cli.main([*argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def sim_gpt2(hier: str, *overrides: str, fusion: str | None = None, **settings) -> dict:
    """gpt2 (or `workload`), 16 + 8 tokens, on `hier` with --set `overrides` ("runtime."
    paths change the runtime)."""
    workload = settings.pop("workload", "gpt2")
    return memwall.simulate(workload, hier, overrides=overrides, fusion=fusion,
                            **{"prompt_len": 16, "gen_len": 8, **settings}).to_dict()


def test_json_summary_has_every_key_scripts_rely_on(capsys):
    s = summary(capsys, "--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT)
    for key in ("workload", "hierarchy", "batch", "prompt_len", "gen_len", "tp", "params",
                "flops", "mops_bytes", "arithmetic_intensity", "prefill_s",
                "decode_s_per_token", "tokens_per_s", "total_s", "compute_s", "stall_s",
                "bytes_by_level", "bound_s"):
        assert key in s, key
    assert s["params"] == 124_439_808
    assert set(s["stall_s"]) == {"registers", "l1", "l2", "hbm", "dispatch", "interconnect"}
    assert set(s["bytes_by_level"]) == {"registers", "l1", "l2", "hbm"}
    assert s["compute_s"] + sum(s["stall_s"].values()) == pytest.approx(s["total_s"], rel=1e-9)
    assert s["total_s"] >= s["bound_s"]


@pytest.mark.parametrize("fusion, golden", [(None, GOLDEN), ("none", GOLDEN_UNFUSED)])
def test_golden_gpt2_on_hbm_accel(fusion, golden):
    """The end-to-end figures of a short gpt2 run, against a stored summary (rel 1e-6): with
    the file's fused kernels, and one kernel per op."""
    got = sim_gpt2("hbm_accel.yaml", fusion=fusion)
    want = json.loads(golden.read_text())
    assert got["fusion"] == want["fusion"]
    for key in ("total_s", "prefill_s", "decode_s_per_token", "compute_s", "bound_s", "flops",
                "mops_bytes"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key
    for key in ("stall_s", "bytes_by_level"):
        for level, v in want[key].items():
            assert got[key][level] == pytest.approx(v, rel=1e-6, abs=1e-12), (key, level)


def test_identical_inputs_give_byte_identical_json(tmp_path):
    """The same command twice writes the same bytes (the provenance records the command
    line, output path included, and nothing that changes from run to run)."""
    out, runs = tmp_path / "a.json", []
    for _ in range(2):
        assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT,
                         "--json", str(out)]) == 0
        runs.append(out.read_bytes())
    assert runs[0] == runs[1]


def test_big_l2_keeps_gpt2_weights_resident_across_tokens():
    base = sim_gpt2("hbm_accel.yaml")
    big = sim_gpt2("hbm_accel_big_l2.yaml")
    weights = 2 * 124_439_808  # bf16
    # hbm_accel streams every weight from HBM every token; big L2 only on the first pass
    assert base["bytes_by_level"]["hbm"] > 7 * weights  # 8 passes (the gather reads few rows)
    assert big["bytes_by_level"]["hbm"] < 1.1 * weights
    assert big["stall_s"]["hbm"] < 0.5 * base["stall_s"]["hbm"]  # only the first pass
    # decode is markedly faster once the weights are resident: it was HBM-bound, now L2-bound
    assert big["decode_s_per_token"] < base["decode_s_per_token"] / 1.3
    assert (base["bound_by"], big["bound_by"]) == ("hbm", "l2")
    # with free launches the gain nears the bandwidth ratio of L2 to HBM (5.5 vs 3.35 TB/s)
    base0 = sim_gpt2("hbm_accel.yaml", "runtime.kernels.launch=0 us")
    big0 = sim_gpt2("hbm_accel_big_l2.yaml", "runtime.kernels.launch=0 us")
    assert big0["decode_s_per_token"] < base0["decode_s_per_token"] / 1.5
    # a launch-bound runtime (eager, 10 us a kernel) hides the gain: dispatch is the wall there
    base10 = sim_gpt2("hbm_accel.yaml", "runtime.kernels.launch=10 us")
    big10 = sim_gpt2("hbm_accel_big_l2.yaml", "runtime.kernels.launch=10 us")
    assert big10["decode_s_per_token"] > base10["decode_s_per_token"] / 1.1
    assert big10["bound_by"] == "dispatch"


def test_cache_hit_rates_per_level():
    """Bytes each cache served against the bytes read through it: an LRU L2 of 50 MiB never
    holds gpt2's 249 MB of weights across a step; a 512 MiB one serves every pass after the
    first, and HBM then moves only what the L2 missed plus the KV cache written."""
    base = sim_gpt2("hbm_accel.yaml")
    big = sim_gpt2("hbm_accel_big_l2.yaml")
    ana = sim_gpt2("hbm_accel_big_l2.yaml", engine="analytic")
    for s in (base, big):
        assert set(s["cache_hit_rate"]) == set(s["cache_lookup_bytes"]) == {"l2"}
    assert base["cache_hit_bytes"]["l2"] == 0 and base["cache_hit_rate"]["l2"] == 0.0
    looked, hit = big["cache_lookup_bytes"]["l2"], big["cache_hit_bytes"]["l2"]
    assert looked == base["cache_lookup_bytes"]["l2"]  # the same reads, whatever the cache
    assert big["cache_hit_rate"]["l2"] == hit / looked
    assert 7 / 8 * 0.95 < hit / looked < 7 / 8  # 8 passes over the weights, all but one hit
    missed = looked - hit
    assert missed <= big["bytes_by_level"]["hbm"] < missed + 2 * 24 * 12 * 2 * 768 * 2
    assert (ana["cache_lookup_bytes"], ana["cache_hit_bytes"]) == (
        big["cache_lookup_bytes"], big["cache_hit_bytes"])


def test_throughput_per_sequence_and_for_the_batch_and_the_names_users_use():
    s = sim_gpt2("hbm_accel.yaml", batch=4)
    assert s["ttft_s"] == s["prefill_s"] and s["tpot_s"] == s["decode_s_per_token"]
    assert s["tokens_per_s"] == pytest.approx(1 / s["decode_s_per_token"])
    assert s["throughput_tokens_per_s"] == pytest.approx(4 * s["tokens_per_s"])
    enc = sim_gpt2("hbm_accel.yaml", workload="bert-base", gen_len=0)
    assert enc["ttft_s"] is enc["tpot_s"] is enc["throughput_tokens_per_s"] is None


def test_ops_writes_the_per_op_type_table_without_a_trace(tmp_path, capsys):
    import csv
    import doctest

    import sim.op_table

    assert doctest.testmod(sim.op_table).failed == 0
    out = tmp_path / "ops.csv"
    s = summary(capsys, "--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT,
                "--ops", str(out))
    rows = list(csv.DictReader(out.open()))
    assert [p.name for p in tmp_path.iterdir()] == ["ops.csv"]
    assert {r["op_type"]: int(r["calls"]) for r in rows} == {
        k: v["calls"] for k, v in s["by_op_type"].items()}
    assert sum(int(r["calls"]) for r in rows) == s["n_ops"]
    for r in rows:
        want = s["by_op_type"][r["op_type"]]
        assert float(r["elapsed_s"]) == pytest.approx(want["elapsed_s"], rel=1e-12)
        assert float(r["wait_s"]) == pytest.approx(want["stall_s"], rel=1e-9)
    for level, b in s["bytes_by_level"].items():
        assert sum(int(r[f"bytes.{level}"]) for r in rows) == b
    assert sum(int(r["lookup_bytes.l2"]) for r in rows) == s["cache_lookup_bytes"]["l2"]
    assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0)
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed, reverse=True)


@pytest.mark.parametrize("wide,narrow", [("fp32", "bf16"), ("bf16", "int8"), ("int8", "int4")])
def test_lower_precision_is_never_slower(wide, narrow):
    def t(dtype: str) -> float:
        h = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
        spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=16, gen_len=4,
                                 precision=workloads.Precision(dtype, "bf16", dtype))
        return simulate_spec(spec, h)["total_s"]

    assert t(narrow) <= t(wide)


def test_more_hbm_bandwidth_is_never_slower_on_llama():
    kw = dict(workload="llama2-7b", prompt_len=8, gen_len=3)
    slow = sim_gpt2("hbm_accel.yaml", **dict(kw))
    fast = sim_gpt2("hbm_accel.yaml", "memory.hbm.bandwidth=4.5 TB/s", **dict(kw))
    assert fast["total_s"] < slow["total_s"]


def test_analytic_engine_matches_des_without_prefetch(capsys):
    des = summary(capsys, "--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT,
                  "--prefetch-depth", "0")
    ana = summary(capsys, "--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT,
                  "--engine", "analytic")
    assert des["total_s"] == pytest.approx(ana["total_s"], rel=0.01)
    assert des["bytes_by_level"] == ana["bytes_by_level"]
    assert des["total_s"] >= des["bound_s"] and ana["total_s"] >= ana["bound_s"]


def test_encoder_runs_one_pass(capsys):
    s = summary(capsys, "--workload", "bert-base", "--hier", "hbm_accel.yaml")
    assert s["gen_len"] == 0 and s["decode_s_per_token"] is None and s["prefill_s"] > 0


def test_report_names_every_level_and_the_verdict(capsys):
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT]) == 0
    out = capsys.readouterr().out
    for word in ("decode", "tokens/s", "where the time went", "compute", "stall hbm", "hbm",
                 "arithmetic intensity", "verdict", "stall most"):
        assert word in out


def test_model_that_fits_nowhere_is_one_line_with_bytes(capsys):
    assert cli.main(["--workload", "llama2-70b", "--hier", "hbm_accel.yaml", *SHORT]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "weights need" in err and "bytes" in err and "hbm" in err and "free of 80 GB" in err


def test_tiered_dram_holds_a_70b_model():
    s = sim_gpt2("hbm_accel_tiered.yaml", workload="llama2-70b", prompt_len=4, gen_len=2)
    assert s["bytes_by_level"]["lpddr"] > 0
    assert s["stall_s"]["lpddr"] > s["stall_s"]["hbm"]


def test_bad_override_exits_2_with_the_key(capsys):
    code = cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml",
                     "--set", "memory.l2.bandwidth=3 GHz"])
    assert code == 2
    err = capsys.readouterr().err
    assert "memory.l2.bandwidth" in err and "3 GHz" in err


def test_bad_input_never_prints_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\ncompute: [\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--workload", "gpt2", "--hier", str(bad)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and proc.stderr.count("\n") == 1


def test_describe_prints_counts(capsys):
    assert cli.main(["describe", "--workload", "gpt2", "--weight-dtype", "int8",
                     "--act-dtype", "int8", "--kv-dtype", "int8", "--prompt-len", "1",
                     "--gen-len", "128", "--json", "-"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 124_439_808
    assert 1.5 < d["arithmetic_intensity"] < 2.5


@pytest.mark.parametrize("argv,words", [
    (["--prefetch-depth", "-1"], ["prefetch_depth = -1", "expected"]),
    (["--json", "/nonexistent-dir/x.json"], ["--json", "no such directory"]),
])
def test_bad_options_fail_before_simulating(capsys, argv, words):
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml", *SHORT, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words)


def test_a_run_over_max_ops_is_refused_before_any_work(tmp_path, capsys):
    from memwall.simulation import run_size

    req = memwall.request("gpt2", "hbm_accel", prompt_len=16, gen_len=5)
    n, secs = run_size(req)
    r = memwall.simulate("gpt2", "hbm_accel", prompt_len=16, gen_len=5, max_ops=n)
    assert r.n_ops == n and secs > 0  # the estimate is exact when every step runs
    out = tmp_path / "s.json"
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel", "--prompt-len", "16",
                     "--gen-len", "5", "--max-ops", str(n - 1), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the run simulates {n:,} op executions" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_long_run_prints_its_size_first(monkeypatch, capsys):
    from memwall import simulation

    monkeypatch.setattr(simulation, "LONG_RUN_S", 0.0)
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel", *SHORT, "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n_ops"] == 696
    assert "memwall: this run simulates 696 op executions" in err
