"""Sampled decode (sim/sampling.py): the plan covers every step once, a sampled run agrees
with the full run within the error it reports, and a trace of one reads back the same."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memwall
from sim import read_trace, sampling
from sim.inspection import inspect_trace


@given(st.integers(1, 5000), st.integers(sampling.WARMUP + 1, 200))
@settings(max_examples=200, deadline=None)
def test_a_plan_covers_every_step_once_in_odd_blocks(n: int, k: int) -> None:
    p = sampling.plan(n, k)
    if k >= n:
        assert p is None
        return
    assert p is not None and p.n_decode == n and len(p.steps) <= k + 1
    assert list(p.steps) == sorted(set(p.steps)) and p.steps[0] == 1 and p.steps[-1] <= n
    covered = list(range(1, sampling.WARMUP + 1))
    for (a, b), mid in zip(p.blocks, p.steps[sampling.WARMUP:], strict=True):
        covered += range(a, b + 1)
        assert mid == (a + b) // 2 and p.weights[mid] == b - a + 1
        assert (b - a + 1) % 2 == 1 or b == a + 1  # odd, bar one pair left at the end
    assert covered == list(range(1, n + 1))


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="expected at least"):
        sampling.plan(100, sampling.WARMUP)
    with pytest.raises(memwall.MemwallError, match="decode_samples = 2: expected an integer"):
        memwall.simulate("gpt2", "hbm_accel", decode_samples=2)


CASES = [  # (workload, hierarchy, settings): dense, batched, tiered DRAM, MoE and TP
    ("gpt2", "hbm_accel", {"prompt_len": 64, "gen_len": 400}),
    ("llama2-7b", "a100_80gb", {"prompt_len": 128, "gen_len": 600, "batch": 16}),
    ("mixtral-8x7b", "h100_sxm", {"prompt_len": 64, "gen_len": 300, "batch": 8, "tp": 2}),
]


@pytest.mark.slow
@pytest.mark.parametrize("workload, hier, kw", CASES)
def test_a_sampled_run_is_within_its_reported_error_of_the_full_run(workload, hier, kw):
    full = memwall.simulate(workload, hier, engine="analytic", **kw)
    part = memwall.simulate(workload, hier, engine="analytic", decode_samples=24, **kw)
    assert part.decode_steps_simulated < 40 and full.decode_steps_simulated == kw["gen_len"] - 1
    assert full.sampling_error_s == 0.0
    err = abs(part.total_s - full.total_s)
    assert err <= part.sampling_error_s + 1e-9 * full.total_s  # + rounding of the sums
    assert err < 1e-4 * full.total_s
    assert part.decode_s_per_token == pytest.approx(full.decode_s_per_token, rel=1e-4)
    assert part.n_ops == full.n_ops and part.flops == full.flops
    for level, b in full.bytes_by_level.items():  # bytes: the steps' own, weighted
        assert part.bytes_by_level[level] == pytest.approx(b, rel=1e-6)


def test_the_des_engine_samples_too_and_a_trace_reads_back_the_same(tmp_path) -> None:
    kw = {"prompt_len": 32, "gen_len": 120}
    full = memwall.simulate("gpt2", "hbm_accel", **kw)
    part = memwall.simulate("gpt2", "hbm_accel", decode_samples=20, trace=tmp_path / "t.h5",
                            **kw)
    assert abs(part.total_s - full.total_s) <= part.sampling_error_s + 1e-9 * full.total_s
    assert part.total_s == pytest.approx(full.total_s, rel=1e-6)
    t = read_trace(tmp_path / "t.h5", records=False)
    assert t.sample is not None and t.sample.n_decode == 119
    assert len(t.steps["step"]) == 1 + part.decode_steps_simulated  # only the steps that ran
    again = inspect_trace(str(tmp_path / "t.h5"))["summary"]
    for key in ("total_s", "decode_s_per_token", "n_ops", "sampling_error_s"):
        assert again[key] == pytest.approx(part.to_dict()[key], rel=1e-12), key


def test_skipped_steps_still_fill_the_kv_cache_where_it_spills() -> None:
    """llama2-70b on the tiered design: the KV cache outgrows what HBM has left and spills to
    LPDDR mid-run; sampled writes land where the full run puts them."""
    kw = {"prompt_len": 2048, "gen_len": 300, "batch": 8, "engine": "analytic"}
    full = memwall.simulate("llama2-70b", "hbm_accel_tiered", **kw)
    part = memwall.simulate("llama2-70b", "hbm_accel_tiered", decode_samples=24, **kw)
    assert part.bytes_by_level["lpddr"] == pytest.approx(full.bytes_by_level["lpddr"], rel=1e-4)
    assert abs(part.total_s - full.total_s) <= part.sampling_error_s + 1e-9 * full.total_s
