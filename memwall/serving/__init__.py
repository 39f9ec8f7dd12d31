"""Serving: requests arriving over time, a scheduler batching them iteration by iteration, a
paged KV cache, and every iteration an op graph run on the main job's engines.

    import memwall
    r = memwall.serve("llama2-7b", "h100_sxm", requests=200, rate=8, prompt_len=512,
                      gen_len=256, scheduler="continuous")
    r.ttft_s["p99"], r.tpot_s["p50"], r.throughput_tokens_per_s, r.preemptions
    print(r.report())

Modules: requests.py (arrivals and lengths), kv_cache.py (the paged KV cache), schedulers.py
(one class per scheduler, SCHEDULERS), server.py (the SimPy loop on the device, `serve`),
settings.py (the checks and defaults), command.py (`memwall serve`),
result.py (ServeResult and its report), plots.py (latency CDFs, occupancy timelines).
"""

from .result import ServeResult
from .schedulers import SCHEDULERS
from .server import serve

__all__ = ["SCHEDULERS", "ServeResult", "serve"]
