"""Compute and collective times as pure functions, against hand arithmetic."""

from __future__ import annotations

import pytest
from runs import HIER_DIR
from toy import toy_hierarchy, toy_runtime

from sim import cost, load_hierarchy


def test_matmul_runs_at_peak_for_its_precision_times_the_runtimes_efficiency():
    a100 = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR]).compute
    rt = toy_runtime(matmul_efficiency=0.8)
    rate = a100.peak_flops_per_s["bf16"] * 0.8
    assert cost.compute_s("matmul", 2 * 10**12, "bf16", a100, rt) == pytest.approx(2e12 / rate)


def test_a_precision_the_device_lacks_runs_in_the_next_wider_one():
    rt = toy_runtime()
    a100 = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR]).compute
    assert "fp8" not in a100.peak_flops_per_s  # Ampere has no fp8 tensor cores
    assert cost.matmul_rate("fp8", a100, rt) == cost.matmul_rate("fp16", a100, rt)
    xeon = load_hierarchy("xeon_gold_6242.yaml", search_dirs=[HIER_DIR]).compute
    assert cost.matmul_rate("bf16", xeon, rt) == cost.matmul_rate("fp32", xeon, rt)


def test_vector_ops_run_at_the_vector_rate_and_collectives_compute_nothing():
    c = toy_hierarchy().compute  # vector 1e11 FLOP/s
    rt = toy_runtime(vector_efficiency=0.5)
    assert cost.compute_s("vector", 10**6, "fp32", c, rt) == pytest.approx(2e-5)
    assert cost.compute_s("collective", 10**6, "fp32", c, rt) == 0.0
