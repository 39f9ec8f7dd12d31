"""The B200 and Xeon Platinum 8480+ files: their figures in SI units, and a decode that streams
the weights at the sustained bandwidth of their home, as the physics says it must."""

from __future__ import annotations

import warnings

import pytest
from runs import HIER_DIR

import memwall
from sim.hierarchy_file import HierarchyWarning, load_hierarchy
from workloads import PRESETS

NO_LAUNCH = ("runtime.kernels.launch=0 us",)  # the hardware alone: no per-kernel overhead


def _load(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error", HierarchyWarning)
        return load_hierarchy(name, [HIER_DIR])


def test_b200_figures_are_the_datasheet_and_the_microbenchmarks() -> None:
    h = _load("b200")
    assert (h.name, h.runtime) == ("b200", "tensorrt-llm")
    hbm = h.level("hbm")
    # cub's streaming add reached 6.721 TB/s (NVIDIA/cccl pull 7391)
    assert hbm.bandwidth_bytes_per_s * hbm.efficiency == pytest.approx(6.721e12, rel=1e-3)
    assert hbm.capacity_bytes == 180e9
    # the driver's 7680-bit bus at 3996 MHz, double data rate
    assert hbm.bandwidth_bytes_per_s == pytest.approx(7680 / 8 * 3996e6 * 2, rel=0.01)
    assert h.level("l2").capacity_bytes == pytest.approx(126.5 * 2**20)
    peak = h.compute.peak_flops_per_s
    assert peak["bf16"] == peak["fp16"] == 2.25e15 and peak["fp8"] == peak["int8"] == 4.5e15
    assert set(peak) == {"fp32", "bf16", "fp16", "fp8", "int8"}  # no fp4 in the schema
    assert h.compute.units == 148
    # dense bf16 per SM per clock is Hopper's doubled
    assert peak["bf16"] / (h.compute.units * h.compute.clock_hz) == pytest.approx(8192, rel=0.01)
    link = h.interconnect
    assert link.link_bandwidth_bytes_per_s == 900e9  # NVLink5 1.8 TB/s both directions
    assert (link.topology, link.max_devices) == ("switch", 8)
    assert link.latency_s == 1e-6


def test_xeon_8480_figures_are_ark_and_the_mess_measurement() -> None:
    h = _load("xeon_platinum_8480")
    assert (h.name, h.runtime) == ("xeon_platinum_8480", "ggml")
    assert [lv.name for lv in h.levels] == ["registers", "l1", "l2", "l3", "dram"]
    cores, clock = 56, 3.0e9
    dram = h.level("dram")
    assert dram.bandwidth_bytes_per_s == pytest.approx(8 * 4800e6 * 8)  # 307.2 GB/s
    assert dram.bandwidth_bytes_per_s * dram.efficiency == pytest.approx(240.6e9, rel=1e-3)
    assert dram.latency_s == pytest.approx(117e-9)
    peak = h.compute.peak_flops_per_s
    assert h.compute.clock_hz == clock
    assert peak["bf16"] == pytest.approx(cores * 1024 * clock, rel=1e-3)  # AMX
    assert peak["int8"] == pytest.approx(cores * 2048 * clock, rel=1e-3)
    assert peak["fp32"] == pytest.approx(cores * 64 * clock, rel=1e-3)  # AVX-512 FMA
    assert set(peak) == {"fp32", "bf16", "int8"}  # AMX and AVX-512; fp16, fp8 run as bf16
    assert h.level("l1").capacity_bytes == cores * 48 * 2**10
    assert h.level("l2").capacity_bytes == cores * 2 * 2**20
    assert h.level("l3").capacity_bytes == 105 * 2**20


@pytest.mark.parametrize("name, home", [("b200", "hbm"), ("xeon_platinum_8480", "dram")])
def test_a_batch_1_decode_streams_the_weights_from_their_home(name: str, home: str) -> None:
    h = _load(name)
    r = memwall.simulate("llama2-7b", h, prompt_len=16, gen_len=4, overrides=NO_LAUNCH)
    assert r.verdict == f"memory-bound ({home})"
    stalls = r.stall_s
    assert stalls[home] == max(stalls.values()) and stalls[home] > 0.8 * sum(stalls.values())
    level = h.level(home)
    weight_bytes = PRESETS["llama2-7b"].n_params * 2  # bf16
    expected = weight_bytes / (level.bandwidth_bytes_per_s * level.efficiency)
    assert r.decode_s_per_token == pytest.approx(expected, rel=0.2)
