"""Wave and tile quantization of matmuls: sim.cost.gemm_shape and wave_factor, and the keys
that turn them on: the hierarchy's compute.units and the runtime's efficiency.matmul_tile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from runs import HIER_DIR
from test_hierarchy import BASE, load_text
from toy import chain, toy_hierarchy, toy_runtime

import workloads
from memwall.inputs import as_runtime
from sim import cost, load_hierarchy
from sim.cost import op_compute_s
from sim.hierarchy_file import HierarchyError
from sim.runtime_file import RuntimeFileError, parse_runtime

A100_UNITS, A100_TILE = 108, (64, 128, 64)


# --- the factor on toy GEMMs, by hand --------------------------------------------------------


def test_a_grid_that_fills_whole_waves_costs_nothing_extra() -> None:
    # 4 x 4 output in 2 x 2 tiles: 4 tiles on 4 units, one full wave
    assert cost.wave_factor((1, 4, 4, 8), 4, (2, 2, 1)) == 1.0


def test_a_tail_that_cannot_be_split_costs_a_whole_wave() -> None:
    # 4 x 6 in 2 x 2 tiles: 6 tiles on 4 units; K = 1 is one k-step, so the 2 tail tiles run
    # unsplit: 2 waves of 2 x 2 x 4 units = 32 element slots for 24 elements
    assert cost.wave_factor((1, 4, 6, 1), 4, (2, 2, 1)) == pytest.approx(2 * 4 * 4 / 24)


def test_the_tail_is_split_along_k_to_fill_its_wave() -> None:
    # as above with K = 8: the 2 tail tiles split 2 ways (4 units // 2) -> 1.5 wave-times
    assert cost.wave_factor((1, 4, 6, 8), 4, (2, 2, 1)) == pytest.approx(1.5 * 4 * 4 / 24)


def test_split_k_is_limited_to_one_slice_per_k_step() -> None:
    # one 2 x 2 tile on 4 units: K = 8 in k-steps of 4 allows 2 slices, not 4 -> half a wave,
    # with 4 units' worth of 2 x 2 slots for 4 elements
    assert cost.wave_factor((1, 2, 2, 8), 4, (2, 2, 4)) == pytest.approx(0.5 * 4 * 4 / 4)


def test_edge_tiles_are_padded() -> None:
    # 3 x 4 in 2 x 2 tiles on 4 units: 2 x 2 = 4 tiles, one wave, 16 slots for 12 elements
    assert cost.wave_factor((1, 3, 4, 8), 4, (2, 2, 1)) == pytest.approx(16 / 12)


def test_batched_gemms_count_tiles_per_member() -> None:
    # 3 independent 2 x 2 GEMMs: 3 tiles on 2 units, K = 1 (no split): 2 waves x 2 units x
    # 4 slots = 16 for 12 elements
    assert cost.wave_factor((3, 2, 2, 1), 2, (2, 2, 1)) == pytest.approx(16 / 12)


def test_a100_out_projection_at_128_tokens() -> None:
    # (128 x 4096) @ (4096 x 4096) in 64 x 128 tiles: 2 x 32 = 64 tiles on 108 SMs, split
    # 108 // 64 = 1 way: one wave with 44 SMs idle -> 108 / 64
    f = cost.wave_factor((1, 128, 4096, 4096), A100_UNITS, A100_TILE)
    assert f == pytest.approx(108 / 64)
    hier = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR])
    trt = as_runtime(None, hier)  # the file's default runtime, as it runs on the A100
    assert hier.compute.units == A100_UNITS and trt.matmul_tile == A100_TILE
    flops = 2 * 128 * 4096 * 4096
    ideal = flops / (312e12 * trt.matmul_efficiency)
    got = cost.compute_s("matmul", flops, "fp16", hier.compute, trt, (1, 128, 4096, 4096))
    assert got == pytest.approx(ideal * 108 / 64)


def test_a_gemv_is_not_padded_to_the_tile_height() -> None:
    # M = 1: 1 x 128 tiles, 32 of them, split 108 // 32 = 3 ways: a third of a wave of
    # 108 x 128 slots for 4096 elements
    f = cost.wave_factor((1, 1, 4096, 4096), A100_UNITS, A100_TILE)
    assert f == pytest.approx(108 * 128 / (3 * 4096))


def test_a_large_gemm_loses_only_its_last_wave() -> None:
    # 2048 x 4096: 32 x 32 = 1024 tiles = 9 full waves + 52 tiles split 2 ways
    f = cost.wave_factor((1, 2048, 4096, 4096), A100_UNITS, A100_TILE)
    assert f == pytest.approx(9.5 * 108 * 64 * 128 / (2048 * 4096))
    assert 1.0 < f < 1.07


@pytest.mark.parametrize("gemm", [(1, 1, 1, 1), (1, 7, 300, 5), (32, 128, 128, 128),
                                  (1, 2048, 11008, 4096), (8, 1, 3072, 128)])
def test_the_factor_is_never_below_one(gemm: tuple[int, int, int, int]) -> None:
    for units, tile in [(1, (1, 1, 1)), (108, A100_TILE), (132, (128, 128, 128))]:
        assert cost.wave_factor(gemm, units, tile) >= 1.0 - 1e-12


# --- GEMM shapes from the op graph -----------------------------------------------------------


def test_gemm_shapes_of_a_llama_prefill() -> None:
    spec = workloads.RunSpec(workloads.load_workload("llama2-7b"), batch=1, prompt_len=128,
                             gen_len=1, precision=workloads.Precision("fp16", "fp16", "fp16"))
    G = workloads.build_phase(spec, 0)
    want = {
        "h0.attn.qkv": (1, 128, 12288, 4096),  # fused q, k, v outputs
        "h0.attn.score": (32, 128, 128, 128),  # per head: q (128 x 128) @ k^T
        "h0.attn.value": (32, 128, 128, 128),  # per head: probs (128 x 128) @ v
        "h0.attn.out": (1, 128, 4096, 4096),
        "h0.mlp.down": (1, 128, 4096, 11008),
        "lm_head": (1, 1, 32000, 4096),  # the last position only
    }
    for name, shape in want.items():
        a = G.nodes[name]
        assert cost.gemm_shape(a["reads"], a["writes"]) == shape, name
        b, m, n, k = shape
        assert a["flops"] == 2 * b * m * n * k  # llama has no biases


def test_one_dimensional_toy_tensors_have_no_gemm_shape() -> None:
    a = chain(1).nodes["op0"]
    assert cost.gemm_shape(a["reads"], a["writes"]) is None


# --- defaults and the engine ----------------------------------------------------------------


def test_without_a_tile_matmuls_run_at_the_flat_rate() -> None:
    c, rt = toy_hierarchy().compute, toy_runtime()
    assert rt.matmul_tile is None
    assert cost.compute_s("matmul", 2 * 10**9, "fp32", c, rt, (1, 1, 7, 10**9)) == 2e9 / 1e12
    for name in ("compiled", "vllm", "ggml", "dataflow"):
        assert as_runtime(name).matmul_tile is None


def test_the_engine_charges_the_wave_factor() -> None:
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), batch=1, prompt_len=128,
                             gen_len=1, precision=workloads.Precision("fp16", "fp16", "fp16"))
    a = workloads.build_phase(spec, 0).nodes["h0.attn.out"]  # (128 x 768) @ (768 x 768) + b
    flat, rt = toy_hierarchy().compute, toy_runtime()
    tiled = toy_runtime(matmul_tile=(64, 128, 64))
    # 2 x 6 = 12 tiles on 4 units: 3 full waves, no tail
    four = dataclasses.replace(flat, units=4)
    assert op_compute_s(a, four, tiled) == pytest.approx(op_compute_s(a, flat, rt))
    # 12 tiles on 5 units: 2 full waves + 2 tail tiles split 2 ways = 2.5 wave-times of
    # 5 x 64 x 128 slots for 128 x 768 elements
    five = dataclasses.replace(flat, units=5)
    assert op_compute_s(a, five, tiled) == pytest.approx(
        op_compute_s(a, flat, rt) * 2.5 * 5 * 64 * 128 / (128 * 768))


# --- the files: units in the hierarchy, the tile in the runtime ----------------------------

RUNTIME = "schema_version: 1\nkernels: {launch: 1 us}\nefficiency:\n  matmul_tile: [64, 128, 64]\n"


def test_units_and_tile_load(tmp_path: Path) -> None:
    c = load_text(tmp_path, BASE.replace("  vector: 10 TFLOP/s\n",
                                         "  vector: 10 TFLOP/s\n  units: 108\n")).compute
    assert c.units == 108
    rt = parse_runtime(RUNTIME, "rt")
    assert rt.matmul_tile == (64, 128, 64)
    assert rt.override(["efficiency.matmul_tile=[128, 128, 128]"]).matmul_tile == (128, 128, 128)


@pytest.mark.parametrize(("units", "fragment"), [
    ("0", "0 is out of range"), ("yes", "is not an integer"), ("1.5", "is not an integer")])
def test_bad_units_are_one_line(tmp_path: Path, units: str, fragment: str) -> None:
    with pytest.raises(HierarchyError) as err:
        load_text(tmp_path, BASE.replace("  vector: 10 TFLOP/s\n",
                                         f"  vector: 10 TFLOP/s\n  units: {units}\n"))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:9: compute.units:"), message
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize(("tile", "fragment"), [
    ("[64, 128]", "a list of 2; expected three integers [M, N, K]"),
    ("64", "64 is not a list"),
    ("[64, 0, 64]", "0 is out of range"),
    ("[64, 12.5, 64]", "12.5 is not an integer"),
])
def test_bad_tiles_are_one_line(tile: str, fragment: str) -> None:
    with pytest.raises(RuntimeFileError) as err:
        parse_runtime(RUNTIME.replace("[64, 128, 64]", tile), "rt")
    message = str(err.value)
    assert message.startswith("rt:4: efficiency.matmul_tile:"), message
    assert fragment in message and "\n" not in message
