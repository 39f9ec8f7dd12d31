"""The analytic engine (sim.analytic.simulate_analytic) against its per-op reference
(_simulate_per_op): every JSON figure within 1e-9 relative and every record equal, on every
bundled hierarchy and on the options that change routing and costs."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from memwall import bundled
from memwall import simulation as simulation_module
from memwall.inputs import request
from memwall.simulation import run
from sim import analytic
from sim.cache import LRU
from workloads import PRESETS

REL = 1e-9
TINY = dataclasses.replace(PRESETS["llama2-7b"], n_layers=2)
TINY_MOE = dataclasses.replace(PRESETS["mixtral-8x7b"], n_layers=2)


def _close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-300), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _both(monkeypatch: pytest.MonkeyPatch, workload: Any, hier: Any, **kw: Any
          ) -> tuple[Any, Any]:
    req = request(workload, hier, engine="analytic", **kw)
    fast = run(req, records=True)
    monkeypatch.setitem(simulation_module.ENGINES, "analytic", analytic._simulate_per_op)
    ref = run(req, records=True)
    monkeypatch.setitem(simulation_module.ENGINES, "analytic", analytic.simulate_analytic)
    return fast, ref


def _same(fast: Any, ref: Any) -> None:
    _close(fast.to_dict(), ref.to_dict(), "summary")
    a, b = fast.records, ref.records
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape, k
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=REL, atol=0, err_msg=k)
        else:
            assert (x == y).all(), k


@pytest.mark.parametrize("path", bundled.hierarchy_files(), ids=lambda p: p.stem)
def test_every_bundled_hierarchy(monkeypatch: pytest.MonkeyPatch, path: Any) -> None:
    model = TINY if path.stem != "sram_only" else dataclasses.replace(PRESETS["gpt2"],
                                                                      n_layers=2)
    fast, ref = _both(monkeypatch, model, path, prompt_len=8, gen_len=6)
    assert fast.n_ops > 0
    _same(fast, ref)


@pytest.mark.parametrize("case", [
    dict(tp=2, hier="h100_sxm"),
    dict(prefetch_depth=4),
    dict(overlap=False),
    dict(weight_dtype="int4"),
    dict(runtime="eager"),  # a host slower than the kernels: dispatch waits on issue
    dict(fusion="none", decode_samples=10, gen_len=40),
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if k != "overrides"))
def test_options(monkeypatch: pytest.MonkeyPatch, case: dict[str, Any]) -> None:
    kw = {"prompt_len": 8, "gen_len": 6, **case}
    hier = kw.pop("hier", "hbm_accel")
    fast, ref = _both(monkeypatch, TINY, hier, **kw)
    _same(fast, ref)


def test_moe_with_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, ref = _both(monkeypatch, TINY_MOE, "h200", prompt_len=4, gen_len=6,
                      routing="zipf:1.2", seed=3, weight_dtype="int4")
    _same(fast, ref)


def test_caches_that_hit_then_thrash(monkeypatch: pytest.MonkeyPatch) -> None:
    """gpt2 of 2 layers, batch 32, on a 108 MiB L2: its weights hit in the cache until the KV
    cache grows past what is left (about step 15), then miss; an op whose facts are
    unchanged must not reuse the costs of the hits it no longer takes."""
    small = dataclasses.replace(PRESETS["gpt2"], n_layers=2)
    fast, ref = _both(monkeypatch, small, "hbm_accel_big_l2", batch=32, prompt_len=8,
                      gen_len=24, overrides={"memory.l2.capacity": "108 MiB"})
    _same(fast, ref)
    steps, hits = fast.records["step"], fast.records["hit_bytes.l2"]
    assert hits[steps == 2].sum() > 100e6 > hits[steps == 23].sum()


def test_kv_cache_writes_spilling_mid_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MiB L2 that every weight matrix empties (the replayed segments) and an HBM that
    the KV cache outgrows at step 9: the writes of replayed ops move to LPDDR mid-run."""
    fast, ref = _both(monkeypatch, TINY, "hbm_accel_tiered", batch=8, prompt_len=64,
                      gen_len=16, overrides={"memory.hbm.capacity": "1.373 GB",
                                             "memory.l2.capacity": "4 MiB"})
    _same(fast, ref)
    steps, lpddr = fast.records["step"], fast.records["bytes.lpddr"]
    assert lpddr[steps == 8].sum() == 0 < lpddr[steps == 15].sum()


def test_segments_replay_without_cache_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an A100 (40 MiB L2, smaller than llama2-7b's qkv and MLP weights) the MLP's
    segments are replayed: fewer cache lookups than the per-op reference, the same records
    (the attention's reads grow every step, so its segment runs op by op)."""
    calls = {"n": 0}
    lookup = LRU.lookup

    def counted(self: LRU, name: str, nbytes: int) -> int:
        calls["n"] += 1
        return lookup(self, name, nbytes)

    monkeypatch.setattr(LRU, "lookup", counted)
    req = request(TINY, "a100_80gb", prompt_len=8, gen_len=12, engine="analytic")
    fast = run(req, records=True)
    n_fast, calls["n"] = calls["n"], 0
    monkeypatch.setitem(simulation_module.ENGINES, "analytic", analytic._simulate_per_op)
    ref = run(req, records=True)
    _same(fast, ref)
    assert n_fast < 0.85 * calls["n"], (n_fast, calls["n"])
