"""Placement and routing without SimPy: bytes crossing levels, sibling tiers."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runs import HIER_DIR
from toy import KB, chain, toy_hierarchy, toy_options

from sim import load_hierarchy, simulate, tensor_footprint
from sim.errors import MemwallError
from sim.hierarchy import Compute, Hierarchy, Level, Placement
from sim.memory import Memory, activation_pool_bytes

TIERED = load_hierarchy("hbm_accel_tiered.yaml", search_dirs=[HIER_DIR])
BIG = load_hierarchy("hbm_accel_big_l2.yaml", search_dirs=[HIER_DIR])


def test_an_lpddr_byte_crosses_l2_but_not_hbm():
    mem = Memory(TIERED, {})
    names = [lv.name for lv in TIERED.levels]
    lp, hbm = names.index("lpddr"), names.index("hbm")
    got = dict(zip(names, mem.crossed(({lp: 100},)), strict=True))
    assert got == {"registers": 100, "l1": 100, "l2": 100, "hbm": 0, "lpddr": 100}
    assert mem.crossed(({hbm: 7}, {lp: 100}, {})) == (107, 107, 107, 7, 100)


moves = st.lists(st.dictionaries(st.integers(0, 4), st.integers(0, 10**12), max_size=5),
                 max_size=3)


@given(moves)
def test_crossed_is_the_sum_over_each_sources_path(moved):
    for hier in (TIERED, BIG):
        mem = Memory(hier, {})
        n = len(hier.levels)
        moved = [{k: v for k, v in m.items() if k < n} for m in moved]
        want = [0] * n
        for m in moved:
            for src, b in m.items():
                for k in mem.paths[src]:
                    want[k] += b
        assert mem.crossed(moved) == tuple(want)


def tiered(hbm_bytes: int) -> Hierarchy:
    """sram 1 MB (LRU cache), hbm, then a big slow tier; activations in sram, else hbm."""
    return Hierarchy(
        "tiered-toy",
        Compute(1e9, {"fp32": 1e12}, 1e11),
        (Level("sram", 10**6, 1e12, 10e-9, 1.0, "lru"),
         Level("hbm", hbm_bytes, 1e11, 100e-9),
         Level("slow", 10**10, 1e10, 1e-6)),
        Placement(("hbm", "slow"), ("hbm", "slow"), ("sram", "hbm")),
    )


def test_a_prefill_too_big_for_sram_keeps_room_in_hbm_and_weights_spill():
    # 4 ops of 1 MB weights each fill a 4 MB hbm; each op's 1.5 MB of activations fits in no
    # sram: hbm keeps 1.5 MB for them before any weight is homed, and weights spill to `slow`
    G = chain(4, w_bytes=10**6, x_bytes=750_000)
    hier = tiered(4 * 10**6)
    records: list = []
    simulate([G], hier, tensor_footprint(G), records.append, toy_options())
    mem = Memory(hier, tensor_footprint(G), activation_pool_bytes(G))
    assert mem.reserved == [0, 1_500_000, 0]
    assert mem.homes["w2"] == ((1, 0, 500_000), (2, 500_000, 10**6))
    assert mem.homes["w3"] == ((2, 0, 10**6),)
    assert sum(r.bytes[2] for r in records) == 1_500_000  # the spilled weights, read from slow
    mem.begin_phase(activation_pool_bytes(G))
    assert mem.act_level == 1


def test_weights_that_fit_only_without_the_activation_room_say_so():
    G = chain(4, w_bytes=10**6, x_bytes=750_000)
    hier = dataclasses.replace(tiered(4 * 10**6), placement=Placement(
        ("hbm",), ("hbm",), ("sram", "hbm")))
    with pytest.raises(MemwallError) as e:
        Memory(hier, tensor_footprint(G), activation_pool_bytes(G))
    msg = str(e.value)
    assert "weights need 0.004 GB (4000000 bytes)" in msg
    assert "0.0015 GB kept for the first phase's activations" in msg and "\n" not in msg


def test_route_reads_tallies_what_each_cache_served_and_what_looked_it_up():
    # sram (LRU, 1 MB) in front of dram: w0 (400 kB) misses, then hits; the activation x0 is
    # homed in sram itself, so it is neither a hit nor a lookup
    G = chain(1)
    hier = toy_hierarchy()
    mem = Memory(hier, tensor_footprint(G), activation_pool_bytes(G))
    mem.begin_phase(activation_pool_bytes(G))
    plan = mem.plan_reads(G.nodes["op0"]["reads"])
    first, second = [0] * 4, [0] * 4
    assert mem.route_reads(plan, first) == {0: KB, 1: 400 * KB}
    assert first == [0, 0, 400 * KB, 0]  # served by sram's cache, nothing; looked it up, all
    assert mem.route_reads(plan, second) == {0: KB + 400 * KB}
    assert second == [400 * KB, 0, 400 * KB, 0]


def test_records_carry_the_cache_tally_and_the_prefetch_lead():
    # three ops, weights fetched one op ahead: op1 and op2's weights were requested when the
    # op before them began; op0's were not
    G = chain(3)
    hier = toy_hierarchy(sram_bytes=10**7)
    records: list = []
    simulate([G, chain(3, step=1)], hier, tensor_footprint(G), records.append,
             toy_options(prefetch_depth=1))
    first, again = records[:3], records[3:]
    assert first[0].prefetch_s == 0.0
    for before, r in zip(first, first[1:], strict=False):
        assert r.prefetch_s == pytest.approx(r.start_s - before.start_s)
    assert all(r.lookup_bytes == (400 * KB, 0) and r.hit_bytes == (0, 0) for r in first)
    assert all(r.hit_bytes == (400 * KB, 0) for r in again)  # the second step hits in sram
    assert all(r.bytes[1] == 0 for r in again)
