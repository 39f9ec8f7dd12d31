"""Documented behaviours pinned by number, each a test that a plausible one-token bug breaks:
waits charged to a flow's bottleneck level, LRU at an exact fit, fair-share ties, "of peak"
against the peak bandwidth, the analytic engine's per-op stalls, the Perfetto compute slice's
start, and the worst level of the most-stalled ops in inspection."""

from __future__ import annotations

import re

import pytest
from toy import chain, toy_hierarchy, toy_options

import memwall
import sim
from sim import inspect_trace, read_trace, tensor_footprint
from sim.cache import LRU
from sim.fabric import Fabric, fair_shares
from sim.perfetto import trace_events
from sim.report import si

# the toy device with its sram (1 MB) slower than its dram: 10 GB/s against 100 GB/s; the
# weights (400 kB, at home in dram) cross the sram on their way in, so sram limits them
SLOW_SRAM = {"sram_bw": 1e10, "sram_policy": "lru"}


def one_op(engine, overlap: bool = True) -> sim.OpRecord:
    h, G, out = toy_hierarchy(**SLOW_SRAM), chain(1), []
    engine([G], h, tensor_footprint(G), out.append, toy_options(overlap=overlap))
    (r,) = out
    return r


@pytest.mark.parametrize("overlap", [True, False])
def test_a_flows_wait_is_charged_to_its_bottleneck_level_not_its_source(overlap):
    """README: waiting for the rest of the bytes is charged to the level that limited the
    flow; only its first-byte latency goes to the level it came from."""
    r = one_op(sim.simulate, overlap)
    sram, dram = r.stall_s
    elapsed = r.end_s - r.start_s
    assert sram > 0.9 * (elapsed - r.dispatch_s - r.compute_s)  # about 38 us
    assert dram <= 2.5 * 100e-9 < 0.01 * sram  # first-byte latencies only, no more
    assert r.dispatch_s + r.compute_s + sram + dram == pytest.approx(elapsed, rel=1e-9)


def test_the_analytic_engines_per_op_stalls_by_hand():
    """One op: dispatch 1 us; first byte after the dram's 100 ns; then max(compute 2 us, the
    busiest level: 402 kB through sram at 10 GB/s = 40.2 us); the excess over compute goes to
    that level, the latency to the level the first byte came from."""
    r = one_op(sim.simulate_analytic)
    sram, dram = r.stall_s
    assert r.dispatch_s == pytest.approx(1e-6, rel=1e-12)
    assert r.compute_s == pytest.approx(2e-6, rel=1e-12)
    assert dram == pytest.approx(100e-9, rel=1e-12)
    assert sram == pytest.approx(402_000 / 1e10 - 2e-6, rel=1e-12)
    assert r.end_s - r.start_s == pytest.approx(1e-6 + 100e-9 + 402_000 / 1e10, rel=1e-12)
    assert r.compute_start_s == pytest.approx(r.start_s + 1e-6 + 100e-9, rel=1e-12)


def test_lru_keeps_a_working_set_that_fits_exactly():
    lru = LRU(300)
    assert lru.lookup("a", 100) == 0 and lru.lookup("b", 200) == 0  # 300 of 300: all kept
    lru.resize(300)  # prunes to fit: nothing to drop
    assert lru.lookup("a", 100) == 100 and lru.lookup("b", 200) == 200
    assert lru.used_bytes == 300
    lru.lookup("c", 1)  # one byte over: the least recent (a) goes
    assert lru.lookup("a", 100) == 0


def test_fair_share_ties():
    """A lone flow on a tie: the source wins, then the innermost level (fabric._table). Flows
    that tie between levels freeze at the innermost of them (progressive filling in order)."""
    fab = Fabric([100.0, 100.0], [(0,), (0, 1)])
    f = fab.start(1, 100, 0.0, at=0.0)
    fab.drain([f])
    assert f.bottleneck == 1 and f.t_end == pytest.approx(1.0, rel=1e-12)
    # sram 200 B/s shared by two flows (100 each) ties with dram's 100 B/s for the far one
    shares = fair_shares({0: 1, 1: 1}, [(0,), (0, 1)], [200.0, 100.0])
    assert shares == {0: (100.0, 0), 1: (100.0, 0)}
    # no tie: the far flow is held by dram, the near one takes the rest of sram
    assert fair_shares({0: 1, 1: 1}, [(0,), (0, 1)], [300.0, 100.0]) == {
        0: (200.0, 0), 1: (100.0, 1)}


def test_of_peak_is_against_the_peak_bandwidth_not_the_sustained():
    r = memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=3)
    s, text = r.to_dict(), r.report()
    hbm = next(lv for lv in r.design.levels if lv.name == "hbm")
    assert hbm.efficiency < 1  # so that peak and sustained differ
    achieved = s["bytes_by_level"]["hbm"] / s["total_s"]
    row = next(line for line in text.splitlines() if line.strip().startswith("hbm "))
    pct = re.findall(r"(\d+)%", row)[0]
    assert int(pct) == round(100 * achieved / hbm.bandwidth_bytes_per_s)
    assert si(hbm.bandwidth_bytes_per_s, "B/s") in row


@pytest.fixture(scope="module")
def gpt2_trace(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("pinned") / "t.h5"
    memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=3, trace=path)
    return path


def test_the_perfetto_compute_slice_starts_when_compute_began(gpt2_trace):
    t = read_trace(gpt2_trace)
    doc = trace_events(t)
    compute_tid = next(e["tid"] for e in doc["traceEvents"]
                       if e["ph"] == "M" and e["args"].get("name") == "compute")
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == compute_tid]
    recs = [r for r in t.op_records() if r.compute_s > 0]
    assert len(slices) == len(recs)
    late = 0
    for e, r in zip(slices, recs, strict=True):
        assert e["ts"] == pytest.approx(r.compute_start_s * 1e6, rel=1e-12, abs=1e-9)
        assert e["dur"] == pytest.approx(r.compute_s * 1e6, rel=1e-12, abs=1e-9)
        late += r.compute_start_s > r.start_s + r.dispatch_s + 1e-12
    assert late  # compute waits for first bytes: the start is not start + dispatch


def test_worst_level_of_the_most_stalled_ops_is_their_largest_stall(gpt2_trace):
    rows = inspect_trace(str(gpt2_trace), top=10)["most_stalled"]
    assert rows
    for row in rows:
        by_level = row["stall_by_level_s"]
        assert row["worst_level"] == max(by_level, key=by_level.get)
        assert row["stall_s"] >= max(by_level.values()) - 1e-15
    assert {row["worst_level"] for row in rows} == {"hbm"}  # gpt2 decode: weights from HBM
