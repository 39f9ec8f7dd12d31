"""The text report a person reads after a run: where the time went, and why."""

from __future__ import annotations

from typing import Any, NamedTuple

from .hierarchy import Hierarchy

BAR = 28
_FUSION = {"none": "one kernel per op", "fused": "fused kernels",
           "attention": "fused attention", "epilogues": "fused epilogues"}


class Scope(NamedTuple):
    """What part of a run a summary covers, when not all of it (sim.inspection)."""

    whole_steps: bool  # every op of the steps selected (no layer or op-kind filter)
    steps: int  # steps (tokens) with a selected op


def si(x: float | None, unit: str) -> str:
    """3 significant digits with an SI prefix: si(3.35e12, 'B/s') -> '3.35 TB/s'."""
    if x is None:
        return "n/a"
    if x == 0:
        return f"0 {unit}"
    for factor, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""),
                      (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {p}{unit}"
    return f"{x:.3g} {unit}"


def bar(frac: float) -> str:
    """A bar of BAR characters, `frac` of it filled (eighths of a character)."""
    n = round(max(0.0, min(1.0, frac)) * BAR * 8)
    full, part = divmod(n, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(BAR)


def format_report(s: dict[str, Any], hier: Hierarchy, top: int = 5,
                  scope: Scope | None = None) -> str:
    """The report of summary `s`. `scope`: for a selection of a trace's records (inspect),
    what was selected; per-token figures and the bound then appear only for whole steps."""
    p = s.get("precision", {})
    runtime = f"runtime {s['runtime']}, " if s.get("runtime") else ""
    whole = scope is None or scope.whole_steps
    lines = [
        f"memwall: {s['workload']} on {s['hierarchy']} ({runtime}{s.get('engine', 'des')} "
        f"engine, tp {s['tp']}, prefetch depth {s.get('prefetch_depth')}, "
        f"{_FUSION.get(s.get('fusion', 'none'), s.get('fusion'))})",
        f"  batch {s['batch']}, prompt {s['prompt_len']}, generate {s['gen_len']}; "
        f"weights {p.get('weights')}, activations {p.get('activations')}, "
        f"KV cache {p.get('kv_cache')}"
        + (f", embeddings {p['embeddings']}" if "embeddings" in p else "")
        + (f"; routing {s['routing']}" + (f" (seed {s['seed']})" if s.get("seed") is not None
                                          else "") if s.get("routing") else ""),
        "",
    ]
    if s.get("prefill_s") is not None:
        name = "encoder pass" if s.get("arch") == "encoder" else "prefill (TTFT)"
        lines.append(f"  {name:<16}{si(s['prefill_s'], 's'):>10}")
    if s.get("decode_s_per_token") is not None:
        rate = f"{s['tokens_per_s']:.1f} tokens/s"
        if s["batch"] > 1 and s.get("throughput_tokens_per_s"):
            rate += (f" per sequence, {s['throughput_tokens_per_s']:.1f} for the batch of "
                     f"{s['batch']}")
        lines.append(f"  {'decode (TPOT)':<16}{si(s['decode_s_per_token'], 's'):>10} per token"
                     f"   {rate}")
    if whole:
        lines.append(f"  {'total':<16}{si(s['total_s'], 's'):>10}   no schedule beats "
                     f"{si(s['bound_s'], 's')} (busiest resource: {s['bound_by']})")
    else:
        lines.append(f"  {'selected ops':<16}{si(s['total_s'], 's'):>10}   their time, end to "
                     "end (per-token figures need whole tokens: no --layer or --op-kind)")
    total = s["total_s"] or 1.0
    lines += ["", "  where the time went" if whole else "  where the selected ops' time went"]
    rows = [("compute", s["compute_s"])] + [
        (f"stall {k}", v) for k, v in s["stall_s"].items() if v > 0 or k in ("dispatch",)
    ]
    for name, v in rows:
        lines.append(f"    {name:<20} {100 * v / total:5.1f}%  {bar(v / total)} {si(v, 's'):>9}")
    looked, hits = s.get("cache_lookup_bytes") or {}, s.get("cache_hit_bytes") or {}
    lines += ["", "  bytes moved per level          bytes"
              + ("   achieved       peak  of peak" if whole else "")
              + ("   cache hit rate" if looked else "")]
    for lv in hier.levels:
        b = s["bytes_by_level"][lv.name]
        row = f"    {lv.name:<20} {si(b, 'B'):>12}"
        if whole:
            ach, peak = b / total, lv.bandwidth_bytes_per_s
            row += f" {si(ach, 'B/s'):>10} {si(peak, 'B/s'):>10}  {100 * ach / peak:4.0f}%"
        if lv.name in looked:
            seen = looked[lv.name]
            rate = f"{100 * hits[lv.name] / seen:5.1f}%" if seen else "    -"
            row += f"   {rate} of {si(seen, 'B')}"
        lines.append(row)
    lines += _energy_table(s, whole)
    ai = s.get("arithmetic_intensity")
    balance = s.get("machine_balance")
    if ai and balance:
        lines += ["", f"  arithmetic intensity {ai:.3g} FLOP/B (FLOPs / MOPs) against a machine "
                      f"balance of {balance:.3g} FLOP/B"]
    lines += [f"  verdict: {s['verdict']}", f"    {_why(s, scope)}"]
    note = runtime_note(s) if whole else None
    if note:
        lines.append(f"    {note}")
    lines += ["", "  op types that stall most          calls    stalled   share of "
              + ("total" if whole else "selected")]
    ranked = sorted(s["by_op_type"].items(), key=lambda kv: -kv[1]["stall_s"])[:top]
    for name, row in ranked:
        lines.append(
            f"    {name:<28} {row['calls']:>8} {si(row['stall_s'], 's'):>10}"
            f"   {100 * row['stall_s'] / total:5.1f}%"
        )
    worst = s["top_stalls"][0] if s["top_stalls"] else None
    if worst:
        lines.append(f"  worst single op: {worst['op']} ({si(worst['stall_s'], 's')} stalled "
                     f"over {worst['calls']} calls)")
    return "\n".join(lines)


def _energy_table(s: dict[str, Any], whole: bool) -> list[str]:
    """Where the energy went, like the time: only when the hierarchy has energy figures."""
    by = s.get("energy_j_by")
    if not by:
        return []
    joules = s["energy_j"] or 1.0
    head = f"  where the energy went{'' if whole else ' (selected ops)'}"
    head += f"          {si(s['energy_j'], 'J')} in all"
    if whole and s.get("joules_per_token") is not None:
        head += f", {si(s['joules_per_token'], 'J')} per token"
    if whole and s.get("average_power_w") is not None:
        head += f", {si(s['average_power_w'], 'W')} on average"
    lines = ["", head]
    for name, v in by.items():
        lines.append(f"    {name:<20} {100 * v / joules:5.1f}%  {bar(v / joules)} "
                     f"{si(v, 'J'):>9}")
    return lines


def runtime_note(s: dict[str, Any]) -> str | None:
    """One line when the runtime, not the hardware, decides the verdict: the run is
    dispatch-bound, and without its dispatch another resource would be the busiest."""
    busy = s["busy_s"]
    if s["bound_by"] != "dispatch" or len(busy) < 2:
        return None
    other = max((k for k in busy if k != "dispatch"), key=busy.__getitem__)
    verdict = f"memory-bound ({other})" if other in s["bytes_by_level"] else f"{other}-bound"
    return (f"the runtime ({s.get('runtime', 'its software stack')}) decides this: without "
            f"its dispatch the busiest resource is {other} ({si(busy[other], 's')} of "
            f"{si(busy['dispatch'], 's')}), so a runtime that replays graphs would make the "
            f"run {verdict}")


def _why(s: dict[str, Any], scope: Scope | None = None) -> str:
    """One sentence on why the busiest resource is what it is."""
    by, busy = s["bound_by"], s["busy_s"][s["bound_by"]]
    if by == "dispatch":
        remedy = ("a cheaper launch (a captured graph, an on-device command queue) would "
                  "help most" if s.get("fusion") == "fused" else
                  "fused kernels (--fusion fused) would help most")
        each = f"each paying {si(busy / s['n_ops'], 's')} of launch overhead; {remedy}"
        if scope is not None and not scope.whole_steps:
            return f"{s['n_ops']} kernels selected, {each}"
        steps = scope.steps if scope is not None else 1 + max(int(s.get("gen_len") or 0) - 1, 0)
        return f"about {s['n_ops'] / max(steps, 1):.0f} kernels per token, {each}"
    if by == "compute":
        return "the compute units are the busiest resource; more FLOP/s or lower precision helps"
    if by == "interconnect":
        return "collectives between devices take the longest; fewer devices or faster links help"
    return (f"{si(s['bytes_by_level'][by], 'B')} crossed {by}: {si(busy, 's')} at its sustained "
            f"bandwidth; more bandwidth, a cache in front of it or fewer bytes would help")
