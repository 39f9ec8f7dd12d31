"""ServeResult: the outcome of a serving run, frozen and typed, in SI units, and its report.

Its fields are the keys of `memwall serve --json`, in that order (`to_dict()` gives them back
exactly). Latencies per request: TTFT, first token minus arrival; TPOT, (response complete
minus first token) / (output tokens - 1), over the requests with more than one output token;
end to end, response complete minus arrival; queueing, first run minus arrival. Each is a
mapping of mean, p50, p90, p99 (numpy's linear interpolation between order statistics) and
max. The duration runs from the first arrival to the last response; throughput counts
generated tokens and completed requests over it; goodput, the requests that met every SLO
given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim import Hierarchy
from sim.report import bar, si

from ..result import frozen, plain

Columns = Mapping[str, np.ndarray]
STATS = ("mean", "p50", "p90", "p99", "max")


@dataclass(frozen=True)
class ServeResult:
    """One serving run. Times in s, sizes in bytes, rates per s."""

    workload: str
    hierarchy: str
    engine: str
    runtime: str
    fusion: str
    tp: int
    precision: Mapping[str, str]
    scheduler: str  # continuous | chunked | static
    max_seqs: int
    max_batched_tokens: int  # tokens per iteration (the chunk budget, chunked)
    kv_block: int  # positions per KV block
    preempt: str  # recompute | swap
    arrivals: str  # "poisson" or "file"
    rate: float | str | None  # requests/s of Poisson arrivals ("inf": all at 0; None: a file)
    seed: int | None
    prompt_len: str  # the lengths as given (512, uniform:..., lognormal:...; "file")
    gen_len: str
    requests: int
    completed: int
    duration_s: float
    throughput_tokens_per_s: float
    throughput_requests_per_s: float
    ttft_s: Mapping[str, float]
    tpot_s: Mapping[str, float | None]
    e2e_s: Mapping[str, float]
    queue_s: Mapping[str, float]
    preemptions: int
    swaps: int  # sequences swapped out or back in
    swap_bytes: int
    kv_peak_bytes: int
    kv_capacity_bytes: int
    kv_swap_capacity_bytes: int
    batch_size_mean: float  # sequences per iteration
    iterations: int
    slo_ttft_s: float | None
    slo_tpot_s: float | None
    goodput_requests_per_s: float | None  # requests meeting every SLO given, per s
    device_busy_s: float  # time the device ran iterations (and swaps)
    compute_s: float
    stall_s: Mapping[str, float]  # level, dispatch, interconnect -> s
    bytes_by_level: Mapping[str, int]
    busy_s: Mapping[str, float]
    bound_s: float
    bound_by: str
    verdict: str
    n_ops: int
    top_stalls: tuple[Mapping[str, Any], ...]
    by_op_type: Mapping[str, Mapping[str, Any]]
    provenance: Mapping[str, Any]
    design: Hierarchy = field(repr=False, compare=False)
    requests_table: Columns | None = field(default=None, repr=False, compare=False)
    iterations_table: Columns | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary, key for key as `memwall serve --json` writes it."""
        return {k: plain(getattr(self, k)) for k in serve_keys()}

    def report(self, top: int = 5) -> str:
        """The command line's text report."""
        return format_serve_report(self.to_dict(), self.design, top)


def serve_keys() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(ServeResult)
                 if f.name not in ("design", "requests_table", "iterations_table"))


def stats(x: np.ndarray) -> dict[str, float | None]:
    """mean, p50, p90, p99 and max of `x` (None for each when it is empty)."""
    if len(x) == 0:
        return dict.fromkeys(STATS)
    p50, p90, p99 = np.percentile(x, [50, 90, 99]).tolist()
    return {"mean": float(np.mean(x)), "p50": p50, "p90": p90, "p99": p99,
            "max": float(np.max(x))}


def _ms(x: float | None) -> str:
    return "n/a" if x is None else si(x, "s")


def format_serve_report(s: Mapping[str, Any], hier: Hierarchy, top: int = 5) -> str:
    p = s["precision"]
    fusion = {"none": "one kernel per op", "fused": "fused kernels"}.get(s["fusion"], s["fusion"])
    source = ("requests from a file" if s["arrivals"] == "file" else
              f"Poisson arrivals at {s['rate']} requests/s (seed {s['seed']})")
    sched = {"continuous": "continuous batching", "chunked": "chunked prefill",
             "static": "static batching"}[s["scheduler"]]
    budget = ("tokens per iteration" if s["scheduler"] != "chunked" else
              "tokens of prefill and decode per iteration")
    preempt = "preemption recomputes" if s["preempt"] == "recompute" else "preemption swaps"
    lines = [
        f"memwall serve: {s['workload']} on {s['hierarchy']} (runtime {s['runtime']}, "
        f"{s['engine']} engine, tp {s['tp']}, {fusion})",
        f"  {s['requests']} requests, {source}; prompt {s['prompt_len']}, output "
        f"{s['gen_len']} tokens; weights {p['weights']}, KV cache {p['kv_cache']}",
        f"  {sched}: at most {s['max_seqs']} sequences, {s['max_batched_tokens']} {budget}; "
        f"KV blocks of {s['kv_block']} positions, {preempt}",
        "",
        f"  completed   {s['completed']} of {s['requests']} in {si(s['duration_s'], 's')}"
        f"   {s['throughput_tokens_per_s']:.1f} tokens/s   "
        f"{s['throughput_requests_per_s']:.3g} requests/s",
    ]
    if s["goodput_requests_per_s"] is not None:
        slo = " and ".join(f"{k} <= {si(v, 's')}" for k, v in
                           (("TTFT", s["slo_ttft_s"]), ("TPOT", s["slo_tpot_s"])) if v)
        lines.append(f"  goodput     {s['goodput_requests_per_s']:.3g} requests/s meet {slo}")
    lines += ["", f"  latency      {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}"]
    for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("end to end", "e2e_s"),
                      ("queueing", "queue_s")):
        row = s[key]
        lines.append(f"    {name:<10}" + "".join(f" {_ms(row[k]):>9}" for k in STATS))
    cap = s["kv_capacity_bytes"] or 1
    lines += [
        "",
        f"  batch       {s['batch_size_mean']:.1f} sequences per iteration on average, "
        f"{s['iterations']} iterations",
        f"  KV cache    peak {si(s['kv_peak_bytes'], 'B')} of {si(s['kv_capacity_bytes'], 'B')}"
        f" ({100 * s['kv_peak_bytes'] / cap:.0f}%) in blocks of {s['kv_block']} positions",
    ]
    if s["preemptions"]:
        how = (f"{s['swaps']} swaps moved {si(s['swap_bytes'], 'B')}" if s["swaps"] else
               "each recomputed")
        lines.append(f"  preemption  {s['preemptions']} sequences preempted when the KV cache "
                     f"ran out ({how})")
    else:
        lines.append("  preemption  none: the KV cache never ran out")
    busy = s["device_busy_s"] or 1.0
    idle = s["duration_s"] - s["device_busy_s"]
    idle = idle if idle > 1e-9 * s["duration_s"] else 0.0  # not a rounding residue
    lines += ["", f"  where the device's time went (busy {si(s['device_busy_s'], 's')}, idle "
                  f"{si(idle, 's')})"]
    rows = [("compute", s["compute_s"])] + [
        (f"stall {k}", v) for k, v in s["stall_s"].items() if v > 0 or k == "dispatch"]
    for name, v in rows:
        lines.append(f"    {name:<20} {100 * v / busy:5.1f}%  {bar(v / busy)} {si(v, 's'):>9}")
    lines += ["", "  bytes moved per level          bytes   achieved       peak  of peak"]
    for lv in hier.levels:
        b = s["bytes_by_level"][lv.name]
        ach, peak = b / busy, lv.bandwidth_bytes_per_s
        lines.append(f"    {lv.name:<20} {si(b, 'B'):>12} {si(ach, 'B/s'):>10} "
                     f"{si(peak, 'B/s'):>10}  {100 * ach / peak:4.0f}%")
    lines += [f"  verdict: {s['verdict']} (busiest resource {si(s['bound_s'], 's')} of "
              f"{si(s['device_busy_s'], 's')} busy)"]
    lines += ["", "  op types that stall most          calls    stalled   share of busy"]
    ranked = sorted(s["by_op_type"].items(), key=lambda kv: -kv[1]["stall_s"])[:top]
    for name, row in ranked:
        lines.append(f"    {name:<28} {row['calls']:>8} {si(row['stall_s'], 's'):>10}"
                     f"   {100 * row['stall_s'] / busy:5.1f}%")
    return "\n".join(lines)


def build_result(outcome: Any, provenance: Mapping[str, Any]) -> ServeResult:
    """The ServeResult of a run (server.Outcome)."""
    spec, done, it = outcome.spec, outcome.done, outcome.iterations
    source, slos = spec.source, spec.slos
    run = spec.run
    req = {c: np.array(v, dtype=np.float64 if c.endswith("_s") else np.int64) for c, v in (
        ("id", [s.id for s in done]), ("arrival_s", [s.req.arrival_s for s in done]),
        ("prompt_tokens", [s.req.prompt_tokens for s in done]),
        ("output_tokens", [s.req.output_tokens for s in done]),
        ("generated", [s.generated for s in done]),
        ("scheduled_s", [s.scheduled_s for s in done]),
        ("first_token_s", [s.first_token_s for s in done]),
        ("finish_s", [s.finish_s for s in done]),
        ("preemptions", [s.preemptions for s in done]))}
    out = req["output_tokens"]
    req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
    with np.errstate(invalid="ignore", divide="ignore"):
        req["tpot_s"] = np.where(out > 1, (req["finish_s"] - req["first_token_s"])
                                 / np.maximum(out - 1, 1), np.nan)
    req["e2e_s"] = req["finish_s"] - req["arrival_s"]
    req["queue_s"] = req["scheduled_s"] - req["arrival_s"]
    duration = float(req["finish_s"].max() - req["arrival_s"].min())
    tpot = req["tpot_s"][out > 1]
    slo_ttft, slo_tpot = slos
    goodput = None
    if slo_ttft is not None or slo_tpot is not None:
        ok = np.ones(len(done), bool)
        if slo_ttft is not None:
            ok &= req["ttft_s"] <= slo_ttft
        if slo_tpot is not None:
            ok &= (out <= 1) | (req["tpot_s"] <= slo_tpot)
        goodput = int(ok.sum()) / duration if duration > 0 else None
    sm = outcome.summary
    busy = sm["compute_s"] + sum(sm["stall_s"].values())
    kv = outcome.kv
    fields = dict(
        workload=run.workload.name, hierarchy=run.hierarchy.name, engine=run.engine,
        runtime=run.runtime.name, fusion=run.fusion, tp=run.spec.tp,
        precision=run.spec.precision.as_dict(), scheduler=spec.scheduler,
        max_seqs=spec.max_seqs, max_batched_tokens=spec.max_tokens, kv_block=spec.kv_block,
        preempt=spec.preempt, **source, requests=len(spec.arrivals), completed=len(done),
        duration_s=duration,
        throughput_tokens_per_s=float(req["generated"].sum()) / duration if duration > 0
        else 0.0,
        throughput_requests_per_s=len(done) / duration if duration > 0 else 0.0,
        ttft_s=stats(req["ttft_s"]), tpot_s=stats(tpot), e2e_s=stats(req["e2e_s"]),
        queue_s=stats(req["queue_s"]), preemptions=int(req["preemptions"].sum()),
        swaps=outcome.swaps, swap_bytes=outcome.swap_bytes,
        kv_peak_bytes=kv.peak * kv.block_bytes, kv_capacity_bytes=kv.capacity_bytes,
        kv_swap_capacity_bytes=kv.swap_blocks * kv.block_bytes,
        batch_size_mean=float(it["batch"].mean()) if len(it["batch"]) else 0.0,
        iterations=len(it["batch"]), slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot,
        goodput_requests_per_s=goodput, device_busy_s=busy,
        **{k: sm[k] for k in ("compute_s", "stall_s", "bytes_by_level", "busy_s", "bound_s",
                              "bound_by", "verdict", "n_ops", "top_stalls", "by_op_type")},
        provenance=provenance)
    return ServeResult(**{k: frozen(v) for k, v in fields.items()}, design=run.hierarchy,
                       requests_table=req, iterations_table=it)
