"""Placement and routing without SimPy: bytes crossing levels, sibling tiers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import run
from sim import load_hierarchy
from sim.memory import Memory

TIERED = load_hierarchy("hbm_accel_tiered.yaml", search_dirs=[run.HIER_DIR])
BIG = load_hierarchy("hbm_accel_big_l2.yaml", search_dirs=[run.HIER_DIR])


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
