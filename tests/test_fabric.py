"""The fluid model of bandwidth sharing, without SimPy: max-min fair rates, pipes with latency."""

from __future__ import annotations

import pytest

from sim.fabric import Fabric

# two levels: 0 = sram at 1000 B/s, 1 = dram at 100 B/s; a dram byte crosses both
PATHS = [(0,), (0, 1)]


def test_one_flow_runs_at_its_slowest_level_and_arrives_one_latency_later():
    fab = Fabric([1000.0, 100.0], PATHS)
    f = fab.start(1, 200, latency_s=0.5, at=0.0)
    fab.drain([f])
    assert f.t_end == pytest.approx(2.0) and f.t_last == pytest.approx(2.5)
    assert f.bottleneck == 1 and f.t_first == pytest.approx(0.5)


def test_max_min_fair_shares_leave_a_limited_flow_its_limit():
    # the dram flow is held to 100 B/s by dram, so the sram flow gets the other 900 B/s of sram
    fab = Fabric([1000.0, 100.0], PATHS)
    far = fab.start(1, 100, 0.0, at=0.0)
    near = fab.start(0, 900, 0.0, at=0.0)
    fab.drain([far, near])
    assert near.t_end == pytest.approx(1.0) and far.t_end == pytest.approx(1.0)
    assert near.bottleneck == 0 and far.bottleneck == 1


def test_equal_flows_split_a_level_and_speed_up_when_one_drains():
    fab = Fabric([1000.0, 100.0], PATHS)
    a = fab.start(0, 500, 0.0, at=0.0)
    b = fab.start(0, 1500, 0.0, at=0.0)
    fab.drain([a, b])
    # 500 B/s each until a drains at 1 s (b has 1000 B left), then b alone at 1000 B/s
    assert a.t_end == pytest.approx(1.0) and b.t_end == pytest.approx(2.0)


def test_a_flow_due_later_waits_and_advance_moves_bytes():
    fab = Fabric([1000.0, 100.0], PATHS)
    f = fab.start(1, 100, 0.0, at=2.0)  # due at 2 s
    fab.advance(2.5)
    assert f.remaining == pytest.approx(50.0)
    fab.drain([f])
    assert f.t_end == pytest.approx(3.0)
