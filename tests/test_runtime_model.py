"""The runtime figures the engines charge: a host that issues kernels slower than the device
runs them, per-precision GEMM and weight-streaming efficiencies, device entries under --set.
Numbers by hand on the toy device (tests/toy.py)."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest
from toy import KB, chain, toy_hierarchy, toy_options, toy_runtime

from memwall.inputs import as_runtime
from sim import Summary, cost, simulate, simulate_analytic, tensor_footprint
from sim.opgraph import Tensor
from sim.runtime_file import RuntimeFileError, parse_runtime

US = 1e-6


def run(phases, runtime, engine=simulate, **opts):
    records: list = []
    hier = toy_hierarchy()
    engine(phases, hier, tensor_footprint(phases[-1]), records.append,
           toy_options(runtime, **opts))
    s = Summary(hier)
    for r in records:
        s.add(r)
    return s.result({}), records


@pytest.mark.parametrize("engine", [simulate, simulate_analytic])
def test_a_slow_host_sets_the_pace_of_short_kernels(engine):
    """Three 4.1 us kernels issued every 10 us: kernel i starts at (i + 1) x 10 us, so the
    step takes 3 x 10 us plus the last kernel's body, and the waits go to dispatch."""
    phases = [chain(3)]
    base, _ = run(phases, toy_runtime(dispatch_s=0.0), engine)
    body = base["total_s"] / 3
    slow, records = run(phases, toy_runtime(dispatch_s=1 * US, host_s=10 * US), engine)
    assert slow["total_s"] == pytest.approx(30 * US + body, rel=1e-9)
    assert [r.dispatch_s for r in records] == pytest.approx(
        [10 * US, 10 * US - body, 10 * US - body], rel=1e-9)
    assert slow["stall_s"]["dispatch"] == pytest.approx(30 * US - 2 * body, rel=1e-9)


@pytest.mark.parametrize("engine", [simulate, simulate_analytic])
def test_a_host_faster_than_the_device_costs_nothing(engine):
    phases = [chain(3), chain(3, step=1)]
    launch_only, _ = run(phases, toy_runtime(dispatch_s=1 * US), engine)
    hidden, _ = run(phases, toy_runtime(dispatch_s=1 * US, host_s=0.5 * US), engine)
    assert hidden["total_s"] == pytest.approx(launch_only["total_s"], rel=1e-12)


def test_host_issue_agrees_across_engines():
    phases = [chain(5), chain(5, step=1)]
    rt = toy_runtime(dispatch_s=1 * US, host_s=3 * US, step_s=7 * US)
    des, _ = run(phases, rt, simulate, overlap=False)
    ana, _ = run(phases, rt, simulate_analytic, overlap=False)
    assert des["total_s"] == pytest.approx(ana["total_s"], rel=1e-6)


def int4_chain(n: int = 2) -> nx.DiGraph:
    G = chain(n)
    for _, a in G.nodes(data=True):
        x, w = a["reads"]
        a["reads"] = (x, Tensor(w.name, "weight", w.shape, "int4", w.nbytes))
    return G


@pytest.mark.parametrize("engine", [simulate, simulate_analytic])
def test_weight_streams_of_a_precision_take_longer_but_move_the_same_bytes(engine):
    """memory_by_dtype {int4: 0.5}: the 400 kB int4 weight streams at 50 GB/s, 8 us, not 4."""
    phases = [int4_chain()]
    plain, _ = run(phases, toy_runtime(dispatch_s=0.0), engine)
    slow, _ = run(phases, toy_runtime(dispatch_s=0.0, memory_by_dtype={"int4": 0.5}), engine)
    other, _ = run(phases, toy_runtime(dispatch_s=0.0, memory_by_dtype={"int8": 0.5}), engine)
    assert slow["total_s"] - plain["total_s"] == pytest.approx(2 * 400 * KB / 1e11, rel=1e-3)
    assert slow["bytes_by_level"] == plain["bytes_by_level"]
    assert other["total_s"] == plain["total_s"]


def test_gemm_efficiency_by_precision():
    compute = toy_hierarchy().compute
    rt = toy_runtime(matmul_efficiency=0.8, matmul_by_dtype={"fp8": 0.5})
    assert cost.matmul_rate("fp32", compute, rt) == pytest.approx(0.8e12)
    assert cost.matmul_rate("fp8", compute, rt) == pytest.approx(0.8e12)  # runs as fp32
    fp8 = dataclasses.replace(compute, peak_flops_per_s={"fp32": 1e12, "fp8": 4e12})
    assert cost.matmul_rate("fp8", fp8, rt) == pytest.approx(2e12)


RUNTIME = """schema_version: 1
kernels: {launch: 1 us, host: 4 us}
efficiency:
  matmul: 0.8
  matmul_by_dtype: {fp8: 0.6}
  memory_by_dtype: {int4: 0.5}
devices:
  toy: {efficiency: {matmul: 0.5}}
"""


def test_device_entries_sit_under_the_users_overrides():
    device = toy_hierarchy()
    r = as_runtime(RUNTIME, device)
    assert (r.matmul_efficiency, r.host_s, r.matmul_by_dtype, r.memory_by_dtype) == (
        0.5, 4e-6, {"fp8": 0.6}, {"int4": 0.5})
    assert as_runtime(RUNTIME, device, ["efficiency.matmul=0.3"]).matmul_efficiency == 0.3
    entry = as_runtime(RUNTIME, device, ["devices.toy.efficiency.matmul=0.4"])
    assert entry.matmul_efficiency == 0.4
    assert as_runtime(RUNTIME).matmul_efficiency == 0.8  # no device: the file's figure


@pytest.mark.parametrize("change, message", [
    ("efficiency.matmul_by_dtype.fp9=0.5", "efficiency.matmul_by_dtype.fp9: 0.5 names no "
                                           "precision; expected one of int4"),
    ("efficiency.matmul_by_dtype.fp8=2", "efficiency.matmul_by_dtype.fp8: 2"),
    ("efficiency.memory_by_dtype=3", "efficiency.memory_by_dtype: 3 is not a mapping"),
    ("kernels.host=5", 'kernels.host: "5" has no unit'),
])
def test_bad_runtime_figures_are_one_line(change, message):
    with pytest.raises(RuntimeFileError) as e:
        parse_runtime(RUNTIME, "r", overrides=[change])
    assert message in str(e.value) and "\n" not in str(e.value)
