"""memwall/measure/analysis.py and plan.py: knees, plateaus and the GEMM fit on synthetic
curves with seeded noise, against the tolerances the module states."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from fake_gpu import FakeGPU, Planted

import workloads
from memwall.measure import analysis, plan
from sim.cost import wave_factor
from workloads import parse_hf_config

MiB = 2**20
SIZES = plan.stream_sizes(80 * 10**9)


def sweep(g: FakeGPU, sizes: list[int]) -> tuple[list[int], list[float]]:
    return sizes, [s / float(np.median(g.stream("read", s))) for s in sizes]


def test_stats_on_hand_numbers() -> None:
    s = analysis.stats([3.0, 1.0, 2.0, 4.0, 5.0])
    assert (s.median, s.n) == (3.0, 5)
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)
    for bad in ([], [1.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="expected finite positive seconds"):
            analysis.stats(bad)


@pytest.mark.parametrize("width", [0.01, 0.15, 0.4])  # a sharp LRU knee to a gradual one
def test_knee_found_within_tolerance_under_noise(width: float) -> None:
    for seed in range(12):
        p = Planted(l2_bytes=(30 + 5 * seed) * MiB, knee_width=width)
        g = FakeGPU(seed=seed, planted=p)
        sizes, rates = sweep(g, SIZES)
        coarse = analysis.find_knee(sizes, rates)
        assert coarse is not None
        assert abs(coarse.capacity_bytes / p.l2_bytes - 1) < math.sqrt(2) - 1
        more = analysis.refine_sizes(coarse)
        assert all(coarse.below < s < coarse.above for s in more)
        s2, r2 = sweep(g, more)
        knee = analysis.find_knee(sizes + s2, rates + r2)
        assert abs(knee.capacity_bytes / p.l2_bytes - 1) < 0.10, (seed, knee)
        assert knee.cache_bytes_per_s == pytest.approx(p.l2_bytes_per_s, rel=0.05)
        assert knee.memory_bytes_per_s == pytest.approx(p.hbm_bytes_per_s["read"], rel=0.05)


def test_no_knee_without_a_cache_in_front() -> None:
    flat = Planted(l2_bytes_per_s=4.2e12)  # 1.05x the HBM rate: nothing to see
    sizes, rates = sweep(FakeGPU(seed=3, planted=flat), SIZES)
    assert analysis.find_knee(sizes, rates) is None
    assert analysis.find_knee(SIZES[:5], [1.0] * 5) is None  # too few points


def test_one_outlier_does_not_move_the_knee() -> None:
    g = FakeGPU(seed=1, noise=0.0)
    sizes, rates = sweep(g, SIZES)
    clean = analysis.find_knee(sizes, rates)
    j = next(i for i, s in enumerate(sizes) if s > 4 * MiB)
    rates[j] /= 3  # one sample three times too slow, well below the knee
    assert analysis.find_knee(sizes, rates).capacity_bytes == pytest.approx(
        clean.capacity_bytes, rel=1e-9)


def test_plateaus_and_latency_windows() -> None:
    assert analysis.plateau([1, 2, 4, 8], [10.0, 11.0, 30.0, 31.0], 1, 2) == 10.5
    assert analysis.plateau([1, 2], [1.0, 2.0], 5, 9) is None
    w = analysis.latency_windows(256 * 1024, 40 * MiB)
    assert w["l1"] == (0.0, 64 * 1024) and w["l2"] == (1 * MiB, 20 * MiB)
    assert w["hbm"] == (320 * MiB, 2560 * MiB)


def gemm_points(g: FakeGPU) -> list[analysis.GemmPoint]:
    pts = []
    for d, m, n, k in plan.gemm_plan(plan.gemm_shapes()):
        t = g.gemm(d, m, n, k)
        if t is not None:
            pts.append(analysis.GemmPoint(d, m, n, k, float(np.median(t))))
    return pts


@pytest.mark.parametrize("tile", [(128, 128, 64), (64, 128, 64), (256, 128, 32)])
def test_gemm_fit_recovers_the_planted_tile_and_peaks(tile) -> None:
    for seed in range(3):
        p = Planted(tile=tile)
        g = FakeGPU(seed=seed, planted=p)
        fit = analysis.fit_gemm(gemm_points(g), p.units, p.hbm_bytes_per_s["read"])
        # K only shows in split-K tails, and tiles of one area can cut these shapes alike:
        # the area must match, and the fitted model must explain the noise-free times
        assert fit.tile[0] * fit.tile[1] == tile[0] * tile[1], (seed, fit.tile)
        for d, peak in p.peaks.items():
            assert fit.peaks[d] == pytest.approx(peak, rel=0.03), (seed, d)
        clean = FakeGPU(seed=seed, noise=0.0, planted=p)
        errs = [abs(_predict(fit, q, p) / q.seconds - 1) for q in gemm_points(clean)
                if q.m >= 64]
        assert float(np.median(errs)) < 0.02
        assert fit.error < 0.03 and fit.scored > 100


def _predict(fit: analysis.GemmFit, q: analysis.GemmPoint, p: Planted) -> float:
    compute = q.flops * wave_factor((1, q.m, q.n, q.k), p.units, fit.tile) / fit.peaks[q.dtype]
    return max(compute, q.bytes / p.gemv_bytes_per_s)


def test_gemm_fit_needs_the_compute_bound_end() -> None:
    small = [analysis.GemmPoint("bf16", 1, 4096, 4096, 1e-5)]
    assert analysis.fit_gemm(small, 132, 4e12) is None


def test_gemv_bandwidth_of_the_streaming_matrix_vector_products() -> None:
    g = FakeGPU(seed=2)
    bw = analysis.gemv_bandwidth(gemm_points(g), 40 * MiB)
    assert bw == pytest.approx(g.p.gemv_bytes_per_s, rel=0.05)


def test_plan_orders_and_sizes() -> None:
    sizes = plan.stream_sizes(80 * 10**9)
    assert sizes[0] == MiB and sizes[-1] == 4 * 2**30 and len(sizes) == 25
    assert plan.stream_sizes(8 * 2**30)[-1] == 2**30  # an eighth of a small card
    chase = plan.chase_sizes(80 * 10**9)
    assert sorted(chase) == [2**e for e in range(12, 31)]
    assert chase[:5] == [2**12, 2**16, 2**20, 2**24, 2**28]  # coarse first
    shapes = plan.gemm_shapes(("gpt2",))
    assert shapes == [(50257, 768), (2304, 768), (768, 768), (3072, 768), (768, 3072)]
    cases = plan.gemm_plan(shapes, ("bf16", "fp32"))
    assert cases[0] == ("bf16", 4096, 50257, 768) and cases[len(shapes)][1] == 1
    assert len(cases) == len(shapes) * (len(plan.GEMM_M) + len(plan.GEMM_M_FP32))


def test_the_l2_resident_model_and_its_twin() -> None:
    widths = []
    for knee in (20 * MiB, 40 * MiB, 60 * MiB, 120 * MiB):
        m = plan.resident_config(knee)
        assert 0.4 * plan.RESIDENT_SHARE * knee <= m.n_params * 2 <= plan.RESIDENT_SHARE * knee
        twin = dataclasses.replace(m, n_layers=plan.twin_layers(m, knee))
        assert twin.n_params * 2 >= plan.TWIN_FACTOR * knee  # its twin streams from HBM
        widths.append((m.d_model, m.n_layers))
    assert [d for d, _ in widths] == [384, 512, 768, 1024]  # the widest that fits, then deeper
    assert widths[1] == (512, 2)
    m = plan.resident_config(40 * MiB)
    assert parse_hf_config(json.dumps(plan.hf_config(m)), "x", m.name) == m  # l2_resident.json


def test_model_runs_and_their_memory() -> None:
    gpt2 = workloads.preset("gpt2")
    runs = plan.model_runs([(gpt2, "gpt2", None)])
    decode = [r for r in runs if r.phase == "decode"]
    assert len(decode) == 2 * len(plan.DECODE_BATCH) * len(plan.DECODE_KV)
    kv4096 = next(r for r in decode if r.length == 4096)
    assert kv4096.max_positions == 4097 and kv4096.model.max_positions == 4097
    assert all(r.length <= 1024 for r in runs if r.phase == "prefill")  # learned positions
    big = next(r for r in plan.model_runs([(workloads.preset("llama2-7b"), "llama2-7b", None)])
               if r.batch == 64 and r.length == 4096)
    kv = 2 * 32 * 64 * 4097 * 32 * 128 * 2
    assert plan.run_bytes(big) > kv > 130e9  # skipped on a 141 GB card
