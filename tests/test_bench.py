"""The benchmark scripts still run (they print timings, so only what they count is checked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from runs import HIER_DIR

from sim import load_hierarchy, read_trace

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_engine_times_the_runs_it_names():
    b = bench("bench_engine")
    _, n_ops, fusion = b.one_run("gpt2", "hbm_accel.yaml", 3, "des", None)
    assert (n_ops, fusion) == (3 * (12 * 7 + 3), "fused")  # a prefill of 1 token, 2 decodes
    _, n_ops, fusion = b.one_run("gpt2", "hbm_accel.yaml", 3, "analytic", "none")
    assert (n_ops, fusion) == (3 * (12 * 12 + 4), "none")


def test_bench_trace_streams_synthetic_records(tmp_path: Path):
    b = bench("bench_trace")
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    per, peak = b.synthetic(hier, 1000, tmp_path / "s.h5", True)
    assert per > 0 and peak > 0
    assert len(read_trace(tmp_path / "s.h5").records["step"]) == 1000


def test_bench_serve_runs_what_it_names():
    b = bench("bench_serve")
    dt, r, cpu = b.one_run(3, "analytic", prompt=16, output=4, model="gpt2",
                           hier="hbm_accel.yaml")
    assert dt > 0 and cpu > 0 and r.completed == 3 and r.rate == b.RATE
    assert "3 requests" in b.line("3 requests", [dt], r, 1.0)
    assert "(CPU " in b.line("3 requests", [dt], r, 1.0, cpu=[cpu])


def test_bench_energy_rows_resolve_and_stay_out_of_the_calibration_rows():
    import csv

    from memwall.inputs import request

    b = bench("bench_energy")
    rows = b.rows()
    assert len(rows) >= 3 and {r["metric"] for r in rows} <= set(b.METRICS)
    with open(b.ROWS.parent / "measured.csv", newline="") as f:
        assert not {r["id"] for r in rows} & {r["id"] for r in csv.DictReader(f)}
    for r in rows:
        req = request(r["workload"], r["hier"], batch=int(r["batch"]),
                      prompt_len=int(r["prompt_len"]), gen_len=int(r["gen_len"]),
                      tp=int(r["tp"]), weight_dtype=r["weight_dtype"], runtime=r["runtime"])
        assert req.hierarchy.energy is not None, r["id"]
        assert float(r["measured"]) > 0


def test_bench_trace_memory_counts_the_runs_it_measures(tmp_path: Path):
    b = bench("bench_trace_memory")
    n, mib = b.peak("gpt2", 2, "analytic", "fused", str(tmp_path / "t.h5"))
    assert n == 2 * (12 * 7 + 3) and mib > 10  # gen 2: a prefill and one decode of 87 ops
    assert read_trace(tmp_path / "t.h5").records["step"].size == n
