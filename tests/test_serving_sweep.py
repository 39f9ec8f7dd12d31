"""Serving sweeps: a sweep file with a serve: section, rate as an axis, the throughput-latency
curves and the highest rate that meets the SLO."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from memwall import sweeps
from memwall.serving import sweep as serving_sweep
from memwall.serving.settings import serve_spec
from memwall.sweep_file import SweepError

SWEEP = """\
base: gh200.yaml
engine: analytic
workloads:
  - {workload: gpt2}
serve: {requests: 16, prompt_len: 32, gen_len: 8, slo_ttft: 0.00065, slo_tpot: 0.001}
grid:
  rate: [10, 100, 100000]
zip:
  placement.kv_cache: ["[hbm]", "[hbm, lpddr]"]
  preempt: [recompute, swap]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_points_are_serving_runs_of_each_design(tmp_path: Path) -> None:
    points = sweeps.resolve(sweeps.read_sweep(_write(tmp_path, SWEEP)))
    assert len(points) == 6 and len({p.key for p in points}) == 6
    assert all(isinstance(p.task, serving_sweep.ServeTask) for p in points)
    by = {(p.run["rate"], p.run["preempt"]): p.task.spec for p in points}
    spec = by[("100", "swap")]
    assert spec.preempt == "swap" and spec.source["rate"] == 100.0
    assert spec.run.hierarchy.placement.kv_cache == ("hbm", "lpddr")
    assert by[("100", "recompute")].run.hierarchy.placement.kv_cache == ("hbm",)
    assert spec.slos == (0.00065, 0.001) and len(spec.arrivals) == 16
    assert points[0].run["prompt_len"] == "32" and points[0].run["batch"] is None


def test_a_serving_sweep_runs_and_finds_the_highest_rate_meeting_the_slo(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = sweeps.sweep(_write(tmp_path, SWEEP), out, workers=1, progress=False)
    assert res.failed == 0 and len(res.rows) == 6
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"rate", "preempt", "ttft_s.p90", "tpot_s.p90", "goodput_requests_per_s",
            "throughput_tokens_per_s"} <= set(rows[0])
    assert (out / "sweep.png").stat().st_size > 10_000
    for design in ("placement.kv_cache=[hbm], preempt=recompute",
                   "placement.kv_cache=[hbm, lpddr], preempt=swap"):
        line = next(x for x in res.verdict.splitlines() if design in x)
        rs = sorted((r for r in res.rows if f"preempt={r['preempt']}" in design),
                    key=lambda r: float(r["rate"]))
        ok = [r for r in rs if r["goodput_requests_per_s"] / r["throughput_requests_per_s"]
              >= serving_sweep.ATTAINMENT]
        assert ok and ok[-1] is not rs[-1]  # the fastest rate misses the SLO
        assert f"meets the SLO up to rate {ok[-1]['rate']} " in line


def test_the_verdict_on_rows() -> None:
    def row(rate: str, good: float, tput: float) -> dict:
        return {"status": "ok", "workload": "m", "rate": rate, "preempt": "swap",
                "throughput_tokens_per_s": tput * 10, "throughput_requests_per_s": tput,
                "goodput_requests_per_s": good, "ttft_s.p90": 0.1, "tpot_s.p90": 0.01}

    rows = [row("1", 1.0, 1.0), row("2", 1.9, 2.0), row("4", 3.0, 3.5), row("8", 1.0, 3.6)]
    text = serving_sweep.verdict(rows, {"rate": ["1", "2", "4", "8"], "preempt": ["swap"]})
    assert "m, preempt=swap: at most 36 tokens/s (rate 8)" in text
    assert "meets the SLO up to rate 2 (20 tokens/s)" in text  # 3.0 / 3.5 < 90% at rate 4
    strict = [row("1", 0.5, 1.0)]
    assert "meets the SLO at no rate swept" in serving_sweep.verdict(strict, {"rate": ["1"]})


@pytest.mark.parametrize(("text", "message"), [
    (SWEEP.replace("serve: {", "nope: {"), "sweep.yaml:5: nope: unknown key"),
    (SWEEP.replace("serve: {requests: 16, ", "serve: {requests: 16, warmup: 1, "),
     "sweep.yaml:5: serve.warmup: unknown key"),
    (SWEEP.replace("serve: {requests: 16, prompt_len: 32, gen_len: 8, slo_ttft: 0.00065, "
                   "slo_tpot: 0.001}\n", ""),
     "sweep.yaml:6: rate: a serving setting; expected a serve: section"),
    (SWEEP.replace("- {workload: gpt2}", "- {workload: gpt2, prompt_len: 64}"),
     "sweep.yaml:4: prompt_len: set in a workload of a serving sweep"),
    (SWEEP.replace("rate: [10, 100, 100000]", "rate: [100, -4]"),
     "sweep.yaml:7: rate: rate -4: expected requests per second > 0"),
    (SWEEP.replace("preempt: [recompute, swap]", "preempt: [recompute, evict]"),
     "sweep.yaml:10: preempt: 'evict': expected one of recompute, swap"),
    (SWEEP.replace("prompt_len: 32", "prompt_len: uniform:3"),
     "sweep.yaml:5: serve: --prompt-len uniform:3: expected"),
])
def test_bad_serving_sweeps_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SweepError) as e:
        sweeps.resolve(sweeps.read_sweep(path))
    assert str(e.value).startswith(str(tmp_path / message)), str(e.value)


def test_the_bundled_example_resolves() -> None:
    path = sweeps.bundled.folder("sweeps") / "gh200_kv_offload.yaml"
    points = sweeps.resolve(sweeps.read_sweep(path))
    assert len(points) == 8 and all(p.task is not None for p in points)
    assert {p.task.spec.run.hierarchy.name for p in points} == {"gh200"}


def test_the_published_serving_rows_resolve() -> None:
    """validation/serving.csv (bench/serve_published.py runs it): every row names a preset, a
    bundled hierarchy and runtime, and settings memwall serve takes."""
    with open(sweeps.bundled.folder("validation") / "serving.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    calibration = yaml.safe_load((sweeps.bundled.folder("validation") / "calibration.yaml")
                                 .read_text())
    fits = {e["name"] for e in calibration["figures"]}
    assert len(rows) >= 3 and len({r["source"].split()[0] for r in rows}) >= 3
    for r in rows:
        spec = serve_spec(r["workload"], r["hier"], requests=int(r["requests"]), rate="inf",
                          prompt_len=int(r["prompt_len"]), gen_len=int(r["gen_len"]),
                          max_seqs=int(r["concurrency"]), scheduler=r["scheduler"],
                          max_batched_tokens=int(r["max_batched_tokens"] or 0) or None,
                          runtime=r["runtime"], weight_dtype=r["weight_dtype"],
                          kv_dtype=r["kv_dtype"], tp=int(r["devices"]))
        assert float(r["value"]) > 0 and r["metric"] in (
            "request_s", "throughput_tokens_per_s", "ttft_s", "tpot_s")
        assert spec.run.runtime.name == r["runtime"] and len(spec.arrivals) == int(r["requests"])
        assert r["fitted_by"] in ("", *fits), r["fitted_by"]  # a fit that used the same figure
