"""Pictures of a trace, drawn headless: matplotlib Figures made without pyplot (so the global
backend is never touched and a notebook's inline plots keep working), imported only when drawing.

    roofline    achieved FLOP/s against arithmetic intensity (FLOPs/MOPs), a point per op
                type; one bandwidth ceiling per memory level (sustained) and the compute peaks
    breakdown   time per step as stacked areas: compute, stall per level, dispatch,
                interconnect (decode steps; the wall grows with the KV cache)
    timeline    a window of steps, a row per resource; each op's time laid out in the order
                dispatch, compute, stalls (totals are exact, the order within an op indicative)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .errors import MemwallError
from .outfile import figure_format, write_figure
from .perfetto import default_window
from .report import si
from .trace_reader import Tokens, Trace, op_totals, read_trace

KINDS = ("roofline", "breakdown", "timeline")
SIZE_IN = (9.0, 5.5)  # figure size (inches)
DPI = 120


def plot_trace(path: str, kind: str, out: str | os.PathLike[str], tokens: Tokens = None) -> None:
    """Draw picture `kind` of trace `path` into `out`, in the format of its extension (png,
    pdf, svg), written atomically, with the run's provenance in the file's metadata."""
    figure_format(out, "-o")
    fig = trace_figure(path, kind, tokens)
    t = read_trace(path, records=False)
    write_figure(fig, out, {"Title": fig.axes[0].get_title(),
                            "Description": json.dumps(t.summary.get("provenance", {}))}, dpi=DPI)


def trace_figure(path: str, kind: str, tokens: Tokens = None) -> Any:
    """Picture `kind` of trace `path` (steps `tokens`) as a matplotlib Figure."""
    if kind not in KINDS:
        raise MemwallError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    if kind == "roofline":
        t = read_trace(path, tokens=tokens, records=False)
        _roofline(ax, t)
    elif kind == "breakdown":
        _breakdown(ax, read_trace(path, tokens=tokens, records=False))
    else:
        window = tokens if tokens is not None else default_window(read_trace(path, records=False))
        _timeline(ax, read_trace(path, tokens=window))
    return fig


def _title(t: Trace, what: str) -> str:
    m = t.meta
    return (f"{m.get('workload')} on {m.get('hierarchy')}: {what} "
            f"(batch {m.get('batch')}, prompt {m.get('prompt_len')}, gen {m.get('gen_len')})")


def _roofline(ax: Any, t: Trace) -> None:
    tot = op_totals(t)
    types = t.ops["op_type"]
    pts: dict[str, list[float]] = {}
    for i, ty in enumerate(types.tolist()):
        row = pts.setdefault(ty, [0.0, 0.0, 0.0])
        row[0] += tot["flops"][i]
        row[1] += tot["mops_bytes"][i]
        row[2] += tot["elapsed_s"][i]
    pts = {k: v for k, v in pts.items() if v[0] > 0 and v[1] > 0 and v[2] > 0}
    if not pts:
        raise MemwallError(f"{t.path}: no op with FLOPs in the selection; nothing to plot")
    ai = np.array([v[0] / v[1] for v in pts.values()])  # FLOP/byte
    perf = np.array([v[0] / v[2] for v in pts.values()])  # FLOP/s
    c, rt = t.hierarchy.compute, t.runtime
    m_eff, v_eff = (rt.matmul_efficiency, rt.vector_efficiency) if rt else (1.0, 1.0)
    peaks = {f"{d} peak": p * m_eff for d, p in c.peak_flops_per_s.items() if p}
    peaks["vector"] = c.vector_flops_per_s * v_eff
    top = max(peaks.values())
    x = np.logspace(np.log10(min(ai.min(), 0.1) / 2), np.log10(max(ai.max(), 1e4) * 2), 200)
    for name, bw in zip(t.level_names, t.levels["sustained_bytes_per_s"].tolist(), strict=True):
        ax.plot(x, np.minimum(x * bw, top), lw=1.2, label=f"{name} {si(bw, 'B/s')}")
    seen: set[float] = set()
    for name, p in sorted(peaks.items(), key=lambda kv: -kv[1]):
        if p in seen:
            continue
        seen.add(p)
        ax.axhline(p, color="0.4", lw=0.8, ls="--")
        ax.text(x[-1], p, f" {name} {si(p, 'FLOP/s')}", va="bottom", ha="right", fontsize=7)
    ax.scatter(ai, perf, s=36, color="black", zorder=3)
    for name, a, y in zip(pts, ai, perf, strict=True):
        ax.annotate(name, (a, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs / MOPs, FLOP/byte)")
    ax.set_ylabel("achieved (FLOP/s)")
    ax.set_ylim(min(perf.min() / 3, top / 1e6), top * 3)
    ax.legend(fontsize=7, loc="lower right", title="sustained bandwidth", title_fontsize=7)
    ax.set_title(_title(t, "roofline"), fontsize=9)


def _breakdown(ax: Any, t: Trace) -> None:
    s = t.steps
    keep = s["step"] > 0 if (s["step"] > 0).any() else np.ones(len(s["step"]), bool)
    steps = s["step"][keep]
    layers = [("compute", s["compute_s"][keep])]
    layers += [(f"stall {n}", s["stall_s"][keep, i]) for i, n in enumerate(t.level_names)]
    layers += [("stall dispatch", s["dispatch_s"][keep]),
               ("stall interconnect", s["interconnect_s"][keep])]
    layers = [(n, v) for n, v in layers if v.any()]
    colors = _colors(t)
    if len(steps) == 0:
        raise MemwallError(f"{t.path}: no steps in the selection; nothing to plot")
    total = sum(v for _, v in layers)
    scale, unit = _time_unit(float(np.max(total)))
    if len(steps) == 1:
        bottom = 0.0
        for name, v in layers:
            ax.bar(steps, v * scale, bottom=bottom, label=name, width=0.6, color=colors[name])
            bottom += v * scale
    else:
        ax.stackplot(steps, *[v * scale for _, v in layers], labels=[n for n, _ in layers],
                     colors=[colors[n] for n, _ in layers])
    ax.set_xlabel("step (token; KV cache grows by one position per step)")
    ax.set_ylabel(f"time per step ({unit})")
    ax.legend(fontsize=7, loc="upper left")
    prefill = s["end_s"][s["step"] == 0] - s["start_s"][s["step"] == 0]
    note = f"; prefill {si(float(prefill[0]), 's')}" if len(prefill) and keep.sum() < len(keep) \
        else ""
    ax.set_title(_title(t, "time per step" + note), fontsize=9)


def _timeline(ax: Any, t: Trace) -> None:
    r = t.records
    if len(r["step"]) == 0:
        raise MemwallError(f"{t.path}: no op executions in the window; nothing to plot")
    colors = _colors(t)
    rows = list(colors)
    t0 = float(r["start_s"][0])
    scale, unit = _time_unit(float(r["end_s"][-1]) - t0)
    start = (r["start_s"] - t0) * scale
    parts = [r["dispatch_s"] * scale, r["compute_s"] * scale,
             *[r["stall_s"][:, i] * scale for i in range(len(t.level_names))],
             r["interconnect_s"] * scale]
    order = ["stall dispatch", "compute", *rows[1:1 + len(t.level_names)], "stall interconnect"]
    at = start.copy()
    spans: dict[str, list[tuple[float, float]]] = {n: [] for n in rows}
    for name, width in zip(order, parts, strict=True):
        nz = width > 0
        spans[name] = list(zip(at[nz].tolist(), width[nz].tolist(), strict=True))
        at = at + width
    shown = [n for n in rows if spans[n]]
    for y, name in enumerate(shown):
        ax.broken_barh(spans[name], (y - 0.4, 0.8), facecolors=colors[name],
                       edgecolors=colors[name], linewidth=0.6)  # edge: ns slices stay visible
    for k, s0 in zip(t.steps["step"].tolist(), t.steps["start_s"].tolist(), strict=True):
        ax.axvline((s0 - t0) * scale, color="0.6", lw=0.6, ls=":")
        ax.text((s0 - t0) * scale, len(shown) - 0.45, f" step {k}", fontsize=7, va="bottom")
    ax.set_yticks(range(len(shown)), shown)
    ax.set_ylim(-0.6, len(shown) + 0.2)
    ax.invert_yaxis()
    ax.set_xlabel(f"time since step {int(t.steps['step'][0])} began ({unit})")
    a, b = int(t.steps["step"][0]), int(t.steps["step"][-1])
    ax.set_title(_title(t, f"timeline of step {a}" if a == b else f"timeline of steps {a}-{b}"),
                 fontsize=9)


def _colors(t: Trace) -> dict[str, str]:
    """One colour per cause of time, the same in every picture."""
    names = ["compute", *[f"stall {n}" for n in t.level_names], "stall dispatch",
             "stall interconnect"]
    return {n: f"C{i}" for i, n in enumerate(names)}


def _time_unit(span_s: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if span_s * scale >= 1.0:
            return scale, unit
    return 1e9, "ns"
