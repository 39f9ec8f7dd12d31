"""Cache policies by name (sim.cache.POLICIES): LRU by stack distance and pinning on access
sequences worked out by hand, and the extension point (one class, one entry) end to end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runs import HIER_DIR
from toy import KB, chain, toy_hierarchy, toy_options

from sim import load_hierarchy, simulate_analytic, tensor_footprint
from sim.cache import LRU, POLICIES, CachePolicy, Pin, make_cache
from sim.hierarchy_file import HierarchyError, policy_names
from sim.memory import Memory


def test_policies_by_name():
    assert POLICIES == {"lru": LRU, "pin": Pin}
    assert all(issubclass(cls, CachePolicy) for cls in POLICIES.values())
    assert policy_names() == ("none", "lru", "pin")
    assert type(make_cache("pin", 10)) is Pin and make_cache("lru", -5).capacity_bytes == 0
    with pytest.raises(ValueError, match="cache policy 'mru': expected one of lru, pin"):
        make_cache("mru", 10)


def test_lru_rescan_hits_when_reuse_distance_fits():
    c = POLICIES["lru"](1000)
    assert c.lookup("a", 400) == 0  # cold
    assert c.lookup("b", 500) == 0
    assert c.lookup("a", 400) == 400  # 500 bytes of b since, 500 + 400 <= 1000
    assert c.lookup("b", 500) == 500
    assert c.used_bytes == 900 and c.resident_bytes("a") == 400


def test_lru_cyclic_working_set_larger_than_the_cache_thrashes():
    c = POLICIES["lru"](1000)
    for _ in range(3):
        hits = [c.lookup(n, 400) for n in ("a", "b", "c")]
    assert hits == [0, 0, 0]  # each reuse sees 800 bytes of others: 1200 > 1000


def test_lru_growing_tensor_hits_its_old_prefix_only():
    c = POLICIES["lru"](1000)
    c.lookup("kv", 300)
    assert c.lookup("kv", 350) == 300  # the new 50 bytes are cold


def test_tensor_larger_than_the_cache_never_hits():
    c = POLICIES["lru"](1000)
    c.lookup("big", 1200)
    assert c.lookup("big", 1200) == 0


def test_lru_shrunk_forgets_the_least_recent_first():
    c = POLICIES["lru"](1000)
    for n in ("a", "b", "c"):
        c.lookup(n, 300)
    c.resize(650)
    assert [c.resident_bytes(n) for n in "abc"] == [0, 300, 300] and c.used_bytes == 600


def test_pin_keeps_the_first_bytes_admitted_for_good():
    c = POLICIES["pin"](1000)
    for _ in range(2):
        hits = [c.lookup(n, 400) for n in ("a", "b", "c")]
    assert hits == [400, 400, 200]
    c.resize(500)
    assert c.resident_bytes("a") == 400 and c.resident_bytes("c") == 0 and c.used_bytes == 400


accesses = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 600)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(seq=accesses, small=st.integers(0, 2000), extra=st.integers(0, 2000))
def test_a_bigger_lru_never_hits_less(seq, small, extra):
    a, b = LRU(small), LRU(small + extra)
    for name, n in seq:
        assert b.lookup(name, n) >= a.lookup(name, n)


class Bypass(CachePolicy):
    """A policy that keeps nothing: the smallest one a user could add."""

    __slots__ = ()

    def lookup(self, name: str, nbytes: int) -> int:
        return 0

    def resize(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes


def test_a_new_policy_is_one_class_and_one_entry(monkeypatch, tmp_path):
    text = (HIER_DIR / "hbm_accel.yaml").read_text()
    assert "policy: lru" in text
    path = tmp_path / "bypass.yaml"
    path.write_text(text.replace("policy: lru", "policy: bypass"))
    with pytest.raises(HierarchyError, match="expected one of none, lru, pin"):
        load_hierarchy(path)
    monkeypatch.setitem(POLICIES, "bypass", Bypass)
    assert load_hierarchy(path).level("l2").policy == "bypass"
    hier = toy_hierarchy(sram_policy="bypass")
    phases = [chain(2, step=0), chain(2, step=1)]  # the second token rereads the weights
    mem = Memory(hier, tensor_footprint(phases[-1]))
    assert type(mem.caches[0]) is Bypass
    records: list = []
    simulate_analytic(phases, hier, tensor_footprint(phases[-1]), records.append, toy_options())
    assert [r.bytes[1] for r in records] == [400 * KB] * 4  # every weight read from dram
    lru: list = []
    simulate_analytic(phases, toy_hierarchy(), tensor_footprint(phases[-1]), lru.append,
                      toy_options())
    assert lru[2].bytes[1] == 0  # where an LRU serves the reread from sram
