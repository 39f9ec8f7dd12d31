"""A serving run's settings: normalised and checked once (serve_spec), with their defaults.

The device, runtime, model and precision go through memwall.inputs.request, the main job's
one set of defaults and checks; the requests, the scheduler and the KV cache are checked here,
and a bad value gets one line naming its flag and value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim.errors import MemwallError, cut
from workloads.batch import serving_spec

from ..inputs import DECODER_GEN_LEN, DEFAULTS, Request, request
from .requests import Arrival, Lengths, parse_rate, poisson, read_requests
from .schedulers import PREEMPT, SCHEDULERS

DEFAULT_REQUESTS = 100
DEFAULT_MAX_SEQS = 256  # vLLM's max_num_seqs default
DEFAULT_KV_BLOCK = 16  # positions per block, vLLM's block_size default
DEFAULT_CHUNK = 512  # tokens per iteration with chunked prefill (vLLM v0.4's default budget)
MIN_BATCHED_TOKENS = 2048  # without chunking: max(positions, 2048) tokens (vLLM's default)


@dataclass(frozen=True)
class ServeSpec:
    """A serving run, every setting resolved and checked (serve() builds it)."""

    run: Request  # the model, device, runtime, precision and engine (the main job's)
    arrivals: tuple[Arrival, ...]
    scheduler: str  # a name in SCHEDULERS
    max_seqs: int
    max_tokens: int  # tokens per iteration: --max-batched-tokens, or the chunk budget
    kv_block: int  # positions per KV block
    preempt: str  # recompute | swap
    source: Mapping[str, Any]  # how the requests were made: arrivals, rate, seed, lengths
    slos: tuple[float | None, float | None]  # TTFT and TPOT targets (s)


def serve_spec(workload: Any, hierarchy: Any, *, requests: int = DEFAULT_REQUESTS,
               rate: float | str | None = None, seed: int = 0,
               prompt_len: int | str = DEFAULTS["prompt_len"],
               gen_len: int | str = DECODER_GEN_LEN,
               requests_file: str | os.PathLike[str] | None = None,
               scheduler: str = "continuous", max_seqs: int = DEFAULT_MAX_SEQS,
               max_batched_tokens: int | None = None, chunked_prefill: int | None = None,
               kv_block: int = DEFAULT_KV_BLOCK, preempt: str = "recompute",
               slo_ttft: float | None = None, slo_tpot: float | None = None,
               **settings: Any) -> ServeSpec:
    """Normalise and check a serving run's arguments (serve() takes the same)."""
    slos = (seconds("--slo-ttft", slo_ttft), seconds("--slo-tpot", slo_tpot))
    if chunked_prefill is not None:
        _whole("--chunked-prefill", chunked_prefill, 1)
        if scheduler == "continuous":
            scheduler = "chunked"
    if scheduler not in SCHEDULERS:
        raise MemwallError(f"--scheduler {cut(str(scheduler))}: expected one of "
                           f"{', '.join(SCHEDULERS)}")
    if preempt not in PREEMPT:
        raise MemwallError(f"--preempt {cut(str(preempt))}: expected one of {', '.join(PREEMPT)}")
    _whole("--max-seqs", max_seqs, 1)
    _whole("--kv-block", kv_block, 1)
    if max_batched_tokens is not None:
        _whole("--max-batched-tokens", max_batched_tokens, 1)
    run = request(workload, hierarchy, prompt_len=1, gen_len=1, **settings)  # lengths: ours
    m = run.spec.model
    serving_spec(m, run.spec.precision, run.spec.tp)  # a model serving can run, or one line
    if requests_file is not None:
        arrivals = read_requests(requests_file)
        source = {"arrivals": "file", "rate": None, "seed": None, "prompt_len": "file",
                  "gen_len": "file"}
    else:
        if rate is None:
            raise MemwallError("--rate: expected requests per second (or inf), or a "
                               "--requests-file")
        r = parse_rate(rate)
        p, o = Lengths.parse(prompt_len, "--prompt-len"), Lengths.parse(gen_len, "--gen-len")
        arrivals = poisson(requests, r, p, o, seed)
        source = {"arrivals": "poisson", "rate": r if math.isfinite(r) else "inf",
                  "seed": seed, "prompt_len": p.label, "gen_len": o.label}
    for a in arrivals:
        if a.prompt_tokens + a.output_tokens - 1 > m.max_positions:
            raise MemwallError(
                f"request {a.id}: prompt {a.prompt_tokens} + output {a.output_tokens} - 1 "
                f"positions: {m.name!r} has max_position_embeddings = {m.max_positions}; "
                "expected shorter requests")
    if scheduler == "chunked":
        tokens = chunked_prefill or max_batched_tokens or DEFAULT_CHUNK
        if tokens < max_seqs:
            raise MemwallError(f"--chunked-prefill {tokens}: fewer tokens than --max-seqs "
                               f"{max_seqs}, whose decodes share the budget; expected at least "
                               f"{max_seqs}")
    else:
        tokens = max_batched_tokens or max(m.max_positions, MIN_BATCHED_TOKENS)
    return ServeSpec(run, tuple(arrivals), scheduler, max_seqs, tokens, kv_block, preempt,
                     source, slos)


def _whole(flag: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MemwallError(f"{flag} {cut(str(value))}: expected a whole number >= {low}")


def seconds(flag: str, value: float | None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise MemwallError(f"{flag} {cut(str(value))}: expected seconds > 0")
    return v
