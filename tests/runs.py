"""Running a workloads.RunSpec through memwall, as the tests need it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from memwall import bundled
from memwall.inputs import request
from memwall.simulation import run
from sim import Hierarchy, OpRecord
from workloads import RunSpec

HIER_DIR = bundled.folder("hierarchies")


def simulate_spec(spec: RunSpec, hier: Hierarchy, engine: str = "des",
                  prefetch_depth: int | None = None, overlap: bool = True,
                  sinks: Iterable[Callable[[OpRecord], None]] = (),
                  fusion: str | None = None) -> dict[str, Any]:
    """The JSON summary of `spec` on `hier`, through memwall.inputs and memwall.simulation."""
    p = spec.precision
    req = request(spec.model, hier, batch=spec.batch, prompt_len=spec.prompt_len,
                  gen_len=spec.gen_len, weight_dtype=p.weights, act_dtype=p.activations,
                  kv_dtype=p.kv_cache, tp=spec.tp, routing=spec.routing, engine=engine,
                  fusion=fusion,
                  prefetch_depth=prefetch_depth, overlap=overlap)
    return run(req, sinks=sinks).to_dict()
