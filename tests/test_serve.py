"""memwall.serve: requests arriving, schedulers batching them, the paged KV cache, all on the
main job's engines."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import memwall
from memwall.cli import main
from memwall.serving.result import serve_keys
from workloads import preset

ROOT = Path(__file__).resolve().parent.parent
# a two-layer llama, for long runs whose iterations must be cheap
TINY = dataclasses.replace(preset("llama2-7b"), name="tiny-llama", n_layers=2, d_model=512,
                           n_heads=8, n_kv_heads=8, d_ff=1376, vocab=1000)


@pytest.mark.parametrize(("workload", "hier", "P", "G"), [
    ("gpt2", "hbm_accel", 128, 24), ("gpt2", "hbm_accel_big_l2", 64, 12),
    ("llama2-7b", "h100_sxm", 512, 6)])
@pytest.mark.parametrize("engine", ["des", "analytic"])
def test_one_request_alone_is_the_main_job(workload: str, hier: str, P: int, G: int,
                                           engine: str) -> None:
    main = memwall.simulate(workload, hier, prompt_len=P, gen_len=G, engine=engine)
    r = memwall.serve(workload, hier, requests=1, rate=3.0, prompt_len=P, gen_len=G,
                      engine=engine)
    assert r.ttft_s["mean"] == pytest.approx(main.prefill_s, rel=1e-9)
    assert r.tpot_s["mean"] == pytest.approx(main.decode_s_per_token, rel=1e-9)
    assert r.queue_s["max"] == 0.0 and r.preemptions == 0
    assert r.bytes_by_level == pytest.approx(main.bytes_by_level)
    assert r.compute_s == pytest.approx(main.compute_s, rel=1e-9)


def test_static_batch_of_identical_requests_is_the_batched_main_job() -> None:
    main = memwall.simulate("gpt2", "hbm_accel", batch=6, prompt_len=32, gen_len=10)
    r = memwall.serve("gpt2", "hbm_accel", requests=6, rate="inf", prompt_len=32, gen_len=10,
                      scheduler="static", max_seqs=6)
    assert r.e2e_s["max"] == pytest.approx(main.total_s, rel=1e-9)
    assert r.e2e_s["p50"] == r.e2e_s["max"]  # static batching returns the batch together
    assert r.ttft_s["max"] == pytest.approx(main.prefill_s, rel=1e-9)
    assert r.iterations == 10 and r.batch_size_mean == 6


@pytest.mark.parametrize("scheduler", ["continuous", "chunked", "static"])
def test_every_request_finishes_once_with_its_tokens(scheduler: str) -> None:
    r = memwall.serve("gpt2", "hbm_accel", requests=40, rate=400.0, prompt_len="uniform:8:200",
                      gen_len="lognormal:20:0.8", scheduler=scheduler, max_seqs=12,
                      engine="analytic", seed=3)
    t = r.requests_table
    assert sorted(t["id"].tolist()) == list(range(40)) and r.completed == 40
    assert (t["generated"] == t["output_tokens"]).all()
    assert (t["arrival_s"] <= t["scheduled_s"]).all()
    assert (t["scheduled_s"] < t["first_token_s"]).all()
    assert (t["first_token_s"] <= t["finish_s"]).all()
    it = r.iterations_table
    assert (it["batch"] <= 12).all() and (it["end_s"] > it["start_s"]).all()
    assert (it["start_s"][1:] >= it["end_s"][:-1] - 1e-15).all()  # one iteration at a time
    assert r.throughput_tokens_per_s * r.duration_s == pytest.approx(t["output_tokens"].sum())
    assert 0 < r.device_busy_s <= r.duration_s * (1 + 1e-12)


def test_the_same_seed_gives_the_same_run() -> None:
    kw = dict(requests=30, rate=300.0, prompt_len="uniform:8:64", gen_len="uniform:2:30",
              engine="analytic")
    a, b = (memwall.serve(TINY, "hbm_accel", seed=5, **kw) for _ in range(2))
    assert a.to_dict() == b.to_dict()
    c = memwall.serve(TINY, "hbm_accel", seed=6, **kw)
    assert c.ttft_s != a.ttft_s


@pytest.mark.slow
def test_littles_law_on_a_long_stationary_run() -> None:
    """Mean requests in the system, from the per-iteration table (each iteration's waiting,
    running and swapped requests over its span; an arrival counts from its arrival to the next
    iteration's start, the device idle in between holding nothing) = completion rate x mean
    latency, from the per-request table, over the middle of a long run."""
    r = memwall.serve(TINY, "hbm_accel", requests=1200, rate=2500.0, prompt_len=32,
                      gen_len="uniform:4:48", engine="analytic", seed=1)
    it, rq = r.iterations_table, r.requests_table
    t1, t2 = np.quantile(rq["arrival_s"], [0.2, 0.8])
    start, end = it["start_s"], it["end_s"]
    n = it["waiting"] + it["running"] + it["swapped"]
    m = (start >= t1) & (end < t2)
    t1, t2 = start[m][0], end[m][-1]
    area = np.sum(n[m] * (end[m] - start[m]))
    a = rq["arrival_s"][(rq["arrival_s"] >= t1) & (rq["arrival_s"] < t2)]
    area += np.sum(start[np.searchsorted(start, a)] - a)  # arrival to the next iteration
    done = (rq["finish_s"] > t1) & (rq["finish_s"] <= t2)
    lam, W = done.sum() / (t2 - t1), rq["e2e_s"][done].mean()
    assert 0.3 < r.device_busy_s / r.duration_s < 0.95  # loaded, not saturated
    assert area / (t2 - t1) == pytest.approx(lam * W, rel=0.03)


def test_far_above_capacity_throughput_saturates_and_queues_grow() -> None:
    kw = dict(requests=60, prompt_len=64, gen_len=16, engine="analytic", max_seqs=8)
    low, high, higher = (memwall.serve("gpt2", "hbm_accel", rate=rate, **kw)
                         for rate in (50.0, 20000.0, 200000.0))
    assert high.throughput_tokens_per_s > 2 * low.throughput_tokens_per_s
    assert higher.throughput_tokens_per_s == pytest.approx(high.throughput_tokens_per_s,
                                                           rel=0.1)
    assert higher.queue_s["mean"] > 10 * low.queue_s["mean"]
    assert higher.e2e_s["p50"] > high.e2e_s["p50"] > low.e2e_s["p50"]
    for r in (low, high, higher):
        for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
            s = r.__getattribute__(key)
            assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"]


def test_a_smaller_kv_cache_preempts_and_the_report_says_so() -> None:
    kw = dict(requests=40, rate="inf", prompt_len=256, gen_len=128, engine="analytic")
    roomy = memwall.serve(TINY, "hbm_accel", **kw)
    assert roomy.preemptions == 0 and "never ran out" in roomy.report()
    tight = memwall.serve(TINY, "hbm_accel", overrides=["memory.hbm.capacity=60 MB"], **kw)
    assert tight.kv_capacity_bytes < 40 * 383 * 4096 < roomy.kv_capacity_bytes  # all at once
    assert tight.kv_peak_bytes <= tight.kv_capacity_bytes
    assert tight.preemptions > 0 and tight.swaps == 0
    assert f"{tight.preemptions} sequences preempted" in tight.report()
    assert tight.requests_table["preemptions"].sum() == tight.preemptions
    assert (tight.requests_table["generated"] == 128).all()
    assert tight.e2e_s["mean"] > roomy.e2e_s["mean"]


def test_swapping_to_the_second_kv_tier_moves_bytes_over_it() -> None:
    kw = dict(requests=40, rate="inf", prompt_len=256, gen_len=128, engine="analytic",
              overrides=["memory.hbm.capacity=60 MB"])
    swap = memwall.serve(TINY, "gh200", preempt="swap", **kw)
    assert swap.preemptions > 0 and swap.swaps >= swap.preemptions
    assert swap.swap_bytes > 0 and swap.kv_swap_capacity_bytes > 100e9
    assert swap.stall_s["lpddr"] > 0 and swap.bytes_by_level["lpddr"] >= swap.swap_bytes
    assert "swaps moved" in swap.report()
    assert (swap.requests_table["generated"] == 128).all()
    recompute = memwall.serve(TINY, "gh200", **kw)
    assert recompute.swaps == 0 and recompute.bytes_by_level["lpddr"] == 0
    with pytest.raises(memwall.MemwallError, match="expected a second level to swap to"):
        memwall.serve("gpt2", "hbm_accel", requests=2, rate=1.0, preempt="swap")


def test_chunked_prefill_keeps_the_token_budget_and_mixes_decodes() -> None:
    r = memwall.serve("gpt2", "hbm_accel", requests=20, rate=2000.0, prompt_len=300, gen_len=20,
                      chunked_prefill=128, max_seqs=16, engine="analytic")
    it = r.iterations_table
    assert r.scheduler == "chunked" and r.max_batched_tokens == 128
    assert (it["tokens"] <= 128).all()
    mixed = (it["prefill_tokens"] > 0) & (it["decode"] > 0)
    assert mixed.any()
    plain = memwall.serve("gpt2", "hbm_accel", requests=20, rate=2000.0, prompt_len=300,
                          gen_len=20, max_seqs=16, engine="analytic")
    p_it = plain.iterations_table
    assert not ((p_it["prefill_tokens"] > 0) & (p_it["decode"] > 0)).any()  # prefill first


def test_slo_goodput() -> None:
    base = dict(requests=30, rate=3000.0, prompt_len=64, gen_len=16, engine="analytic")
    r = memwall.serve("gpt2", "hbm_accel", slo_ttft=1.0, slo_tpot=1.0, **base)
    assert r.goodput_requests_per_s == pytest.approx(r.throughput_requests_per_s)
    strict = memwall.serve("gpt2", "hbm_accel", slo_ttft=r.ttft_s["p50"], **base)
    met = (r.requests_table["ttft_s"] <= r.ttft_s["p50"]).sum()
    assert strict.goodput_requests_per_s == pytest.approx(met / r.duration_s)
    assert memwall.serve("gpt2", "hbm_accel", **base).goodput_requests_per_s is None


def test_requests_file_with_the_azure_trace_columns(tmp_path: Path) -> None:
    f = tmp_path / "azure.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,120,8\n"
                 "2023-11-16 18:15:46.7805900,60,4\n"
                 "2023-11-16 18:15:47.0805900,33,1\n")
    r = memwall.serve("gpt2", "hbm_accel", requests_file=str(f), engine="analytic")
    t = r.requests_table
    assert t["arrival_s"].tolist() == pytest.approx([0.0, 0.1, 0.4])
    assert t["prompt_tokens"].tolist() == [120, 60, 33]
    assert t["generated"].tolist() == [8, 4, 1]
    assert r.arrivals == "file" and r.rate is None and r.tpot_s["max"] is not None
    ours = tmp_path / "ours.csv"
    ours.write_text("arrival_s,prompt_tokens,output_tokens,note\n0.5,16,3,x\n0,16,2,y\n")
    t = memwall.serve("gpt2", "hbm_accel", requests_file=str(ours)).requests_table
    assert t["arrival_s"].tolist() == [0.0, 0.5] and t["output_tokens"].tolist() == [2, 3]


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`memwall serve` in a fresh interpreter, this checkout first on its path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "memwall", "serve", *argv], cwd=cwd, text=True,
                          capture_output=True, env=env)


def test_bad_input_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "--workload", "gpt2", "--hier", "hbm_accel.yaml"]
    missing = tmp_path / "m.csv"
    missing.write_text("arrival_s,prompt_tokens\n0,5\n")
    negative = tmp_path / "n.csv"
    negative.write_text("arrival_s,prompt_tokens,output_tokens\n0,5,2\n-1,5,2\n")
    for extra, message in [
        (["--rate", "-2"], "--rate -2: expected requests per second > 0"),
        (["--rate", "fast"], "--rate fast: expected requests per second"),
        (["--rate", "1", "--prompt-len", "uniform:9"], "--prompt-len uniform:9: expected"),
        (["--rate", "1", "--gen-len", "lognormal:x:1"], "--gen-len lognormal:x:1: expected"),
        (["--requests-file", str(missing)], f"{missing}, line 1: no column output_tokens or "
                                            "GeneratedTokens"),
        (["--requests-file", str(negative)], f"{negative}, line 3: arrival_s = -1: expected a "
                                             "time >= 0"),
        (["--rate", "1", "--slo-ttft", "-1"], "--slo-ttft -1.0: expected seconds > 0"),
        ([], "--rate: expected requests per second"),
    ]:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memwall: error: "), err
        assert message in lines[0], (message, lines[0])


def test_cli_json_report_and_trace_tables(tmp_path: Path) -> None:
    trace = tmp_path / "serve.h5"
    p = _cli("--workload", "gpt2", "--hier", "hbm_accel.yaml", "--requests", "5", "--rate",
             "200", "--prompt-len", "32", "--gen-len", "6", "--engine", "analytic",
             "--json", str(tmp_path / "s.json"), "--trace", str(trace), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "memwall serve: gpt2 on hbm_accel" in p.stdout and "TTFT" in p.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert list(data) == list(serve_keys())
    for key in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        assert list(data[key]) == ["mean", "p50", "p90", "p99", "max"]
    assert data["completed"] == 5 and data["provenance"]["command_line"][:2] == ["memwall",
                                                                               "serve"]
    with h5py.File(trace) as f:
        assert f["requests/ttft_s"].shape == (5,)
        assert f["requests/ttft_s"][:].max() == data["ttft_s"]["max"]
        assert f["requests/ttft_s"].attrs["units"] == "s"
        assert set(f["iterations"]) >= {"start_s", "batch", "kv_bytes", "waiting"}
        assert len(f["iterations/batch"]) == data["iterations"]
        assert len(f["records/start_s"]) == data["n_ops"]
        assert json.loads(f.attrs["summary"])["completed"] == 5


def test_plots_and_inspect_of_a_serving_trace(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "s.h5"
    r = memwall.serve(TINY, "hbm_accel", requests=40, rate="inf", prompt_len=64, gen_len=128,
                      overrides=["memory.hbm.capacity=30 MB"], engine="analytic", trace=trace)
    assert r.preemptions > 0
    for kind in ("latency", "occupancy"):
        assert main(["plot", str(trace), "--kind", kind, "-o", str(tmp_path / f"{kind}.png")]) \
            == 0
        assert (tmp_path / f"{kind}.png").stat().st_size > 20_000
    assert main(["inspect", str(trace), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("memwall serve: tiny-llama on hbm_accel") and "preempted" in out
    assert "op executions that stalled most (top 3)" in out
    plain = tmp_path / "plain.h5"
    memwall.simulate("gpt2", "hbm_accel", gen_len=2, trace=plain)
    assert main(["plot", str(plain), "--kind", "latency", "-o", str(tmp_path / "x.png")]) == 2
    assert "no serving tables" in capsys.readouterr().err
