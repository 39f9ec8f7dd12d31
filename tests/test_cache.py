"""LRU by stack distance and pinning, on access sequences worked out by hand."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cache import Cache


def test_lru_rescan_hits_when_reuse_distance_fits():
    c = Cache(1000, "lru")
    assert c.lookup("a", 400) == 0  # cold
    assert c.lookup("b", 500) == 0
    assert c.lookup("a", 400) == 400  # 500 bytes of b since, 500 + 400 <= 1000
    assert c.lookup("b", 500) == 500


def test_lru_cyclic_working_set_larger_than_the_cache_thrashes():
    c = Cache(1000, "lru")
    for _ in range(3):
        hits = [c.lookup(n, 400) for n in ("a", "b", "c")]
    assert hits == [0, 0, 0]  # each reuse sees 800 bytes of others: 1200 > 1000


def test_lru_growing_tensor_hits_its_old_prefix_only():
    c = Cache(1000, "lru")
    c.lookup("kv", 300)
    assert c.lookup("kv", 350) == 300  # the new 50 bytes are cold


def test_tensor_larger_than_the_cache_never_hits():
    c = Cache(1000, "lru")
    c.lookup("big", 1200)
    assert c.lookup("big", 1200) == 0


def test_pin_keeps_the_first_bytes_admitted_for_good():
    c = Cache(1000, "pin")
    for _ in range(2):
        hits = [c.lookup(n, 400) for n in ("a", "b", "c")]
    assert hits == [400, 400, 200]
    c.resize(500)
    assert c.resident_bytes("a") == 400 and c.resident_bytes("c") == 0


accesses = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 600)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(seq=accesses, small=st.integers(0, 2000), extra=st.integers(0, 2000))
def test_a_bigger_lru_never_hits_less(seq, small, extra):
    a, b = Cache(small, "lru"), Cache(small + extra, "lru")
    for name, n in seq:
        assert b.lookup(name, n) >= a.lookup(name, n)
