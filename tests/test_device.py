"""A device run one phase at a time (sim.engine.Device, sim.analytic.AnalyticDevice) on a
Memory its caller built: what the serving loop runs iterations on."""

from __future__ import annotations

import pytest
import simpy
from toy import chain, toy_hierarchy, toy_options

from sim import AnalyticDevice, Device, Memory, simulate, simulate_analytic, tensor_footprint
from sim.errors import MemwallError
from sim.memory import activation_pool_bytes
from sim.opgraph import Tensor


def _phases():
    return [chain(3, step=0), chain(3, step=1), chain(3, step=2)]


def test_phases_run_one_at_a_time_give_what_a_whole_run_gives() -> None:
    hier = toy_hierarchy(sram_bytes=2_000_000)  # the weights stay cached from step 1 on
    opts = toy_options(prefetch_depth=1)
    whole: list = []
    simulate(_phases(), hier, tensor_footprint(_phases()[-1]), whole.append, opts)
    env = simpy.Environment()
    mem = Memory(hier, tensor_footprint(_phases()[-1]), activation_pool_bytes(_phases()[0]))
    dev = Device(env, hier, mem, opts)
    pieces: list = []

    def driver():
        for G in _phases():
            yield env.timeout(5e-6)  # an idle gap between phases (arrivals, a scheduler)
            yield from dev.run_phase(G, pieces.append)

    env.process(driver())
    env.run()
    assert len(pieces) == len(whole) == 9
    for k, (a, b) in enumerate(zip(whole, pieces, strict=True)):
        gap = 5e-6 * (k // 3 + 1)
        assert b.start_s - gap == pytest.approx(a.start_s, abs=1e-15)
        assert b.end_s - gap == pytest.approx(a.end_s, abs=1e-15)
        assert (b.bytes, b.stall_s) == (a.bytes, pytest.approx(a.stall_s, abs=1e-15))
    assert pieces[3].bytes[1] == 0  # the cache carried across phases: no dram bytes


def test_analytic_device_phase_by_phase() -> None:
    hier = toy_hierarchy(sram_bytes=2_000_000)
    opts = toy_options()
    whole: list = []
    simulate_analytic(_phases(), hier, tensor_footprint(_phases()[-1]), whole.append, opts)
    dev = AnalyticDevice(hier, Memory(hier, tensor_footprint(_phases()[-1])), opts)
    pieces: list = []
    t = 1.0
    for G in _phases():
        end = dev.run_phase(G, pieces.append, t)
        assert end == pytest.approx(pieces[-1].end_s, abs=1e-15)
        t = end
    assert [r.end_s - 1.0 for r in pieces] == pytest.approx([r.end_s for r in whole])


def test_a_tensor_placed_after_the_footprint_routes_to_its_level() -> None:
    hier = toy_hierarchy(sram_policy="none")
    mem = Memory(hier, {})
    free = mem.free[1]
    mem.place("pool", 1, 1000)
    assert mem.free[1] == free - 1000
    t = Tensor("pool", "kv_cache", (1,), "fp32", 5000)  # larger than its home: the same level
    assert mem.route_reads(mem.plan_reads([t]), [0] * (2 * len(hier.levels))) == {1: 5000}
    assert mem.route_writes(mem.plan_writes([t])) == {1: 5000}
    with pytest.raises(MemwallError, match="has .* free"):
        mem.place("big", 1, free)
    with pytest.raises(MemwallError, match="cache policy lru"):
        Memory(toy_hierarchy(), {}).place("x", 0, 10)
