"""The discrete-event engine against times computed by hand on the toy device (tests/toy.py).

Toy figures: dispatch 1 us; compute 2 MFLOP at 1 TFLOP/s = 2 us; a 400 kB weight from dram at
100 GB/s = 4 us plus 100 ns latency; 1 kB activations in sram (10 ns, 1 TB/s = 1 ns).
"""

from __future__ import annotations

import pytest
from toy import chain, toy_hierarchy, toy_options

from sim import Summary, simulate, simulate_analytic, tensor_footprint
from sim.errors import MemwallError
from sim.opgraph import Tensor

US = 1e-6


def run(phases, hier, engine=simulate, **opts):
    records = []
    engine(phases, hier, tensor_footprint(phases[-1]), records.append, toy_options(**opts))
    summary = Summary(hier)
    for r in records:
        summary.add(r)
    return records, summary.result({})


def test_one_op_is_dispatch_latency_and_the_longer_of_compute_and_transfer():
    records, s = run([chain(1)], toy_hierarchy())
    # 1 us dispatch + 100 ns dram latency + max(2 us compute, 4 us transfer)
    assert s["total_s"] == pytest.approx(1 * US + 0.1 * US + 4 * US, rel=1e-9)
    r = records[0]
    assert r.dispatch_s == pytest.approx(1 * US)
    assert r.compute_s == pytest.approx(2 * US)
    assert r.stall_s[1] == pytest.approx(0.1 * US + 2 * US, rel=1e-9)  # latency + 2 us bandwidth
    assert r.bytes == (400_000 + 2_000, 400_000)


def test_compute_bound_op_hides_the_transfer():
    records, s = run([chain(1, flops=10_000_000)], toy_hierarchy())  # 10 us compute
    assert s["total_s"] == pytest.approx(1 * US + 0.1 * US + 10 * US, rel=1e-9)
    assert records[0].stall_s == pytest.approx((0.0, 0.1 * US))  # only the first-byte latency


def test_ops_in_a_chain_add_up_without_prefetch():
    _, s = run([chain(3)], toy_hierarchy())
    assert s["total_s"] == pytest.approx(3 * 5.1 * US, rel=1e-9)


def test_overlap_off_serialises_reads_compute_and_writes():
    records, s = run([chain(1)], toy_hierarchy(), overlap=False)
    # 1 dispatch + (0.1 latency + 4 transfer) + 2 compute + 1 kB write to sram at 1 TB/s (1 ns)
    assert s["total_s"] == pytest.approx((1 + 0.1 + 4 + 2 + 0.001) * US, rel=1e-9)
    assert records[0].compute_s == pytest.approx(2 * US)


def test_second_token_hits_the_cache():
    # 3 x 400 kB weights fit the 2 MB LRU sram: token 1 streams them from dram, token 2 from sram
    hier = toy_hierarchy(sram_bytes=2_000_000)
    records, _ = run([chain(3, step=0), chain(3, step=1)], hier)
    first, second = records[0], records[3]
    assert first.bytes[1] == 400_000
    assert second.bytes[1] == 0
    # sram: 10 ns latency, 402 kB at 1 TB/s = 0.402 us < 2 us compute
    assert second.end_s - second.start_s == pytest.approx((1 + 0.01 + 2) * US, rel=1e-9)


def test_lru_thrashes_on_a_cyclic_working_set_larger_than_it_and_pin_keeps_a_share():
    # 3 x 400 kB through 1 MB less the 2 kB activation buffer: LRU evicts each weight before
    # its reuse; pin keeps the first 998 kB for good
    phases = [chain(3, step=k) for k in range(3)]
    lru, _ = run(phases, toy_hierarchy(sram_policy="lru"))
    pin, _ = run(phases, toy_hierarchy(sram_policy="pin"))
    assert sum(r.bytes[1] for r in lru if r.step == 2) == 1_200_000
    assert sum(r.bytes[1] for r in pin if r.step == 2) == 1_200_000 - 998_000


def test_prefetch_overlaps_the_next_weights_with_this_op():
    hier = toy_hierarchy()
    records, s = run([chain(2)], hier, prefetch_depth=1)
    # op0: op1's weights stream alone during op0's 1 us dispatch (100 kB), then the two share
    # 100 GB/s: op1's remaining 300 kB drain at 7.1 us (0.1 + 1 + 6), op0's last 100 kB at
    # full rate by 8.1 us. op1: weights already there, 1 us dispatch + 10 ns sram latency + 2 us.
    assert records[0].end_s == pytest.approx(8.1 * US, rel=1e-9)
    assert records[1].end_s - records[1].start_s == pytest.approx(3.01 * US, rel=1e-9)
    # two ops: sharing slowed op0 more than it saved op1 (11.11 us against 10.2 us)
    assert s["total_s"] == pytest.approx(11.11 * US, rel=1e-9)
    # a long chain: dram never idles during dispatch, so prefetch wins
    _, deep = run([chain(12)], hier, prefetch_depth=1)
    _, none = run([chain(12)], toy_hierarchy(), prefetch_depth=0)
    assert deep["total_s"] < 0.95 * none["total_s"]


def test_every_op_accounts_for_its_elapsed_time():
    phases = [chain(4, step=k) for k in range(3)]
    for depth in (0, 1, 2):
        for overlap in (True, False):
            records, _ = run(phases, toy_hierarchy(), prefetch_depth=depth, overlap=overlap)
            for r in records:
                parts = r.dispatch_s + r.compute_s + r.interconnect_s + sum(r.stall_s)
                assert parts == pytest.approx(r.end_s - r.start_s, rel=1e-9)


def test_des_never_beats_the_bound_and_matches_analytic_without_prefetch():
    phases = [chain(4, step=k) for k in range(3)]
    hier = toy_hierarchy()
    _, des = run(phases, hier)
    _, ana = run(phases, hier, engine=simulate_analytic)
    assert des["total_s"] >= des["bound_s"] * (1 - 1e-9)
    assert des["total_s"] == pytest.approx(ana["total_s"], rel=0.01)
    assert des["bytes_by_level"] == ana["bytes_by_level"]
    _, deep = run(phases, toy_hierarchy(), prefetch_depth=2)
    assert deep["total_s"] >= deep["bound_s"] * (1 - 1e-9)


def test_bytes_are_conserved_between_levels():
    records, _ = run([chain(3, step=k) for k in range(2)], toy_hierarchy(sram_bytes=2_000_000))
    for r in records:
        assert r.bytes[0] >= r.bytes[1]  # every byte from dram crosses sram


def test_kv_cache_spills_to_the_next_tier_when_the_first_is_full():
    from sim.hierarchy import Compute, Hierarchy, Level, Placement

    hier = Hierarchy(
        "tiers", Compute(1e9, {"fp32": 1e12}, 1e11),
        (Level("sram", 10_000, 1e12, 1e-9), Level("hbm", 1_000, 1e11, 1e-8),
         Level("slow", 10**6, 1e10, 1e-7)),
        Placement(("slow",), ("hbm", "slow"), ("sram",)),
    )
    import networkx as nx

    G = nx.DiGraph(phase="decode", step=1)
    kv = Tensor("k_cache", "kv_cache", (1,), "fp32", 4_000)
    G.add_node("attn", kind="matmul", op="attn_score", layer=0, flops=0, dtype="fp32",
               reads=(kv,), writes=())
    records, _ = run([G], hier)
    # 1 kB of the 4 kB cache fits hbm; the rest is read from the slow tier, beside hbm
    assert records[0].bytes == (4_000, 1_000, 3_000)


def test_a_model_that_fits_nowhere_is_a_one_line_error():
    hier = toy_hierarchy()
    with pytest.raises(MemwallError, match=r"weights need .* \(20000000000 bytes\).*dram"):
        run([chain(1, w_bytes=20 * 10**9)], hier)


def test_identical_inputs_give_identical_records():
    phases = [chain(4, step=k) for k in range(3)]
    a, _ = run(phases, toy_hierarchy(), prefetch_depth=1)
    b, _ = run(phases, toy_hierarchy(), prefetch_depth=1)
    assert a == b


def test_every_token_accounts_for_its_elapsed_time():
    phases = [chain(5, step=k) for k in range(4)]
    records, _ = run(phases, toy_hierarchy(), prefetch_depth=2)
    for step in range(4):
        mine = [r for r in records if r.step == step]
        parts = sum(r.dispatch_s + r.compute_s + r.interconnect_s + sum(r.stall_s) for r in mine)
        assert parts == pytest.approx(mine[-1].end_s - mine[0].start_s, rel=1e-9)


@pytest.mark.parametrize("engine", [simulate, simulate_analytic])
def test_compute_starts_after_dispatch_and_first_bytes(engine):
    on, _ = run([chain(1)], toy_hierarchy(), engine=engine)
    off, _ = run([chain(1)], toy_hierarchy(), engine=engine, overlap=False)
    assert on[0].compute_start_s == pytest.approx(1.1 * US, rel=1e-9)  # dispatch + dram latency
    assert off[0].compute_start_s == pytest.approx(5.1 * US, rel=1e-9)  # ... + the whole read


def test_a_new_graph_never_gets_a_dead_graphs_order():
    """Orders are cached per graph object; ids are reused once a graph is freed."""
    import gc

    import networkx as nx

    from sim.opgraph import topo_order

    for i in range(200):  # same node count, different names, ids recycled
        G = nx.DiGraph()
        G.add_node(f"op{i}")
        assert topo_order(G) == [f"op{i}"]
        del G
        gc.collect(0)  # the graph sits in a reference cycle (its cached views)
