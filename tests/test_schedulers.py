"""memwall/serving: request arrivals and lengths, the paged KV cache, the schedulers (no device)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from memwall.serving import kv_cache, requests, server
from memwall.serving.kv_cache import PagedKVCache
from memwall.serving.requests import Arrival, Lengths, parse_requests, poisson
from memwall.serving.schedulers import SCHEDULERS, ChunkedPrefill, ContinuousBatching, Plan
from sim.errors import MemwallError


def test_doctests() -> None:
    for module in (kv_cache, requests, server):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_lengths_draw_what_they_say() -> None:
    rng = np.random.default_rng(0)
    u = Lengths.parse("uniform:10:20", "--prompt-len").draw(rng, 4000)
    assert u.min() == 10 and u.max() == 20 and abs(u.mean() - 15) < 0.3
    ln = Lengths.parse("lognormal:300:0.9", "--gen-len").draw(rng, 40000)
    assert ln.min() >= 1 and ln.mean() == pytest.approx(300, rel=0.03)
    assert (Lengths.parse(64, "--prompt-len").draw(rng, 3) == 64).all()
    for bad in ("0", "-3", "uniform:5:2", "uniform:0:3", "lognormal:0.5:1", "lognormal:9:-1",
                "zipf:2", "", "12.5", True):
        with pytest.raises(MemwallError, match="--prompt-len"):
            Lengths.parse(bad, "--prompt-len")


def test_poisson_arrivals_have_the_rate_and_the_seed() -> None:
    a = poisson(20000, 50.0, Lengths("fixed", 8.0), Lengths("fixed", 4.0), seed=7)
    gaps = np.diff([0.0] + [x.arrival_s for x in a])
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.02)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.03)  # exponential: std = mean
    assert poisson(5, 50.0, Lengths("fixed", 8.0), Lengths("fixed", 4.0), 7) == a[:5]
    burst = poisson(3, float("inf"), Lengths("fixed", 8.0), Lengths("fixed", 4.0), 0)
    assert [x.arrival_s for x in burst] == [0.0, 0.0, 0.0]


def test_requests_file_errors_name_file_line_and_value() -> None:
    for text, message in [
        ("", "f.csv: empty"),
        ("arrival_s,prompt_tokens\n", "f.csv, line 1: no column output_tokens or "
                                      "GeneratedTokens; the header has arrival_s, prompt_tokens"),
        ("arrival_s,prompt_tokens,output_tokens\n1,2,0\n", "f.csv, line 2: output_tokens = 0"),
        ("arrival_s,prompt_tokens,output_tokens\n1,x,3\n", "f.csv, line 2: prompt_tokens = x"),
        ("arrival_s,prompt_tokens,output_tokens\n1,2\n", "f.csv, line 2: 2 fields; expected 3"),
        ("arrival_s,prompt_tokens,output_tokens\nsoon,2,3\n", "f.csv, line 2: arrival_s = soon"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,5,2\n"
         "2023-11-16 18:15:40,5,2\n", "f.csv, line 3: TIMESTAMP = 2023-11-16 18:15:40: expected "
                                      "a time >= 0 (and not before the first row's)"),
        ("arrival_s,prompt_tokens,output_tokens\n", "f.csv: no requests"),
    ]:
        with pytest.raises(MemwallError) as e:
            parse_requests(text, "f.csv")
        assert message in str(e.value) and "\n" not in str(e.value)


def test_kv_cache_blocks() -> None:
    kv = PagedKVCache(block_tokens=16, block_bytes=100, blocks=10, swap_blocks=3)
    assert kv.grow(1, 33) and kv.held[1] == 3 and kv.used_bytes == 300
    assert kv.grow(1, 48) and kv.held[1] == 3  # still three blocks
    assert not kv.grow(2, 16 * 8) and 2 not in kv.held  # 8 more do not fit: nothing taken
    assert kv.can_swap_out(1) and kv.swap_out(1) == 300 and kv.free_blocks == 10
    assert not kv.can_swap_out(1) or kv.swap_used == 3
    assert kv.swap_in(1) == 300 and kv.held[1] == 3 and kv.swap_used == 0
    assert kv.release(1) == 3 and kv.peak == 3


def _arrivals(*lengths: tuple[int, int]) -> list[Arrival]:
    return [Arrival(i, 0.0, p, o) for i, (p, o) in enumerate(lengths)]


def test_continuous_batching_prefills_first_then_preempts_the_youngest() -> None:
    kv = PagedKVCache(block_tokens=4, block_bytes=1, blocks=10)
    s = ContinuousBatching(kv, max_seqs=8, max_tokens=100)
    for a in _arrivals((8, 9), (8, 9), (8, 9)):
        s.arrive(a)
    plan = s.plan()  # every prompt's blocks fit (6 of 10): one prefill of all three
    assert [(x.id, t) for x, t in plan.run] == [(0, 8), (1, 8), (2, 8)]
    s.finish(plan, 1.0)
    assert kv.used == 6 and [x.generated for x in s.running] == [1, 1, 1]
    for _ in range(4):  # decodes to 9 .. 12 positions: three blocks each, 9 of 10
        plan = s.plan()
        assert [t for _, t in plan.run] == [1, 1, 1] and not plan.preemptions
        s.finish(plan, 2.0)
    plan = s.plan()  # 13 positions take a fourth block each: the youngest is preempted
    assert [x.id for x in plan.recomputed] == [2]
    assert [x.id for x, _ in plan.run] == [0, 1]
    assert s.waiting[0].id == 2 and s.waiting[0].context == 8 + 5  # prompt and its 5 tokens
    assert kv.held == {0: 4, 1: 4}
    s.finish(plan, 3.0)
    plan = s.plan()  # its 13 positions need 4 blocks, 2 are free: the others decode on
    assert [(x.id, t) for x, t in plan.run] == [(0, 1), (1, 1)] and s.waiting[0].id == 2
    while {x.id for x, _ in plan.run} == {0, 1}:
        s.finish(plan, 4.0)
        plan = s.plan()
    assert not kv.held.get(0) and not kv.held.get(1)  # only once both finished
    assert [(x.id, t) for x, t in plan.run] == [(2, 13)]  # back, prompt and tokens prefilled


def test_chunked_prefill_fills_the_budget_decodes_first() -> None:
    kv = PagedKVCache(block_tokens=16, block_bytes=1, blocks=1000)
    s = ChunkedPrefill(kv, max_seqs=8, max_tokens=64)
    for a in _arrivals((100, 3), (30, 3)):
        s.arrive(a)
    plan = s.plan()
    assert [(x.id, t) for x, t in plan.run] == [(0, 64)]
    s.finish(plan, 1.0)
    plan = s.plan()
    assert [(x.id, t) for x, t in plan.run] == [(0, 36), (1, 28)]
    s.finish(plan, 2.0)
    plan = s.plan()  # 0 decodes; 1 finishes its prompt
    assert [(x.id, t) for x, t in plan.run] == [(0, 1), (1, 2)]
    s.finish(plan, 3.0)
    assert [x.generated for x in s.running] == [2, 1]


def test_static_batching_waits_for_a_full_batch() -> None:
    kv = PagedKVCache(block_tokens=16, block_bytes=1, blocks=1000)
    s = SCHEDULERS["static"](kv, max_seqs=3, max_tokens=10**6)
    for a in _arrivals((10, 2), (10, 5)):
        s.arrive(a)
    assert s.plan() is None
    s.arrivals_done = True  # the last ones run as a smaller batch
    plan = s.plan()
    assert [x.id for x, _ in plan.run] == [0, 1]
    done = []
    for t in range(1, 6):
        done += s.finish(plan, float(t))
        plan = s.plan() or Plan()
    assert [x.id for x in done] == [0, 1] and {x.finish_s for x in done} == {5.0}
