"""The text report a person reads after a run: where the time went, and why."""

from __future__ import annotations

from typing import Any

from .hierarchy import Hierarchy

BAR = 28


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


def _bar(frac: float) -> str:
    n = round(max(0.0, min(1.0, frac)) * BAR * 8)
    full, part = divmod(n, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(BAR)


def format_report(s: dict[str, Any], hier: Hierarchy, top: int = 5) -> str:
    p = s.get("precision", {})
    lines = [
        f"memwall: {s['workload']} on {s['hierarchy']} ({s.get('engine', 'des')} engine, "
        f"tp {s['tp']}, prefetch depth {s.get('prefetch_depth')})",
        f"  batch {s['batch']}, prompt {s['prompt_len']}, generate {s['gen_len']}; "
        f"weights {p.get('weights')}, activations {p.get('activations')}, "
        f"KV cache {p.get('kv_cache')}",
        "",
        f"  {'prefill' if s.get('gen_len') or s.get('arch') != 'encoder' else 'encoder pass'}"
        f"  {si(s['prefill_s'], 's'):>10}",
    ]
    if s["decode_s_per_token"] is not None:
        lines.append(f"  decode   {si(s['decode_s_per_token'], 's'):>10} per token   "
                     f"{s['tokens_per_s']:.1f} tokens/s")
    lines.append(f"  total    {si(s['total_s'], 's'):>10}   no schedule beats "
                 f"{si(s['bound_s'], 's')} (busiest resource: {s['bound_by']})")
    total = s["total_s"] or 1.0
    lines += ["", "  where the time went"]
    rows = [("compute", s["compute_s"])] + [
        (f"stall {k}", v) for k, v in s["stall_s"].items() if v > 0 or k in ("dispatch",)
    ]
    for name, v in rows:
        lines.append(f"    {name:<20} {100 * v / total:5.1f}%  {_bar(v / total)} {si(v, 's'):>9}")
    lines += ["", "  bytes moved per level          bytes   achieved       peak   busy"]
    for lv in hier.levels:
        b = s["bytes_by_level"][lv.name]
        ach, peak = b / total, lv.bandwidth_bytes_per_s
        lines.append(
            f"    {lv.name:<20} {si(b, 'B'):>12} {si(ach, 'B/s'):>10} "
            f"{si(peak, 'B/s'):>10}  {100 * ach / peak:4.0f}%"
        )
    ai = s.get("arithmetic_intensity")
    balance = s.get("machine_balance")
    verdict = s.get("verdict", "")
    lines += [
        "",
        f"  arithmetic intensity {ai:.3g} FLOP/B (FLOPs/MOPs); machine balance "
        f"{balance:.3g} FLOP/B -> {verdict}" if ai and balance else "",
        "",
        f"  ops that stall most (of {s['n_ops']} op executions)",
    ]
    for row in s["top_stalls"][:top]:
        lines.append(
            f"    {row['op']:<28} x{row['calls']:<6} stalled {si(row['stall_s'], 's'):>9}"
            f"  ({100 * row['stall_s'] / total:4.1f}% of total)"
        )
    return "\n".join(line for line in lines)
