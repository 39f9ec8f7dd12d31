"""Pictures of a trace, drawn headless: matplotlib Figures made without pyplot (so the global
backend is never touched and a notebook's inline plots keep working), imported only when drawing.

    roofline    achieved FLOP/s against FLOPs per byte at the level each op type keeps
                busiest, a point per op type in that level's colour (hollow: vector kernels);
                a ceiling per memory level (sustained, under the run's runtime), the matmul
                peak of the run's precision and the vector rate (see roofline_points)
    breakdown   time per step as stacked areas: compute, stall per level, dispatch,
                interconnect (decode steps; the wall grows with the KV cache)
    timeline    a window of steps, a row per resource with its share of the window; each op's
                time laid out in the order dispatch, compute, stalls (totals are exact, the
                order within an op indicative), bars as wide as their time, without edges
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .cost import WIDER
from .errors import MemwallError
from .opgraph import DTYPE_BITS
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


def roofline_points(t: Trace) -> list[dict[str, Any]]:
    """One point per op type with FLOPs in trace `t`: its FLOPs, its time, the level it
    keeps busiest, the FLOPs per byte moved there (`intensity`), what it achieved and the
    roof at that intensity (FLOP/s).

    An op's time runs from when its first bytes were requested to its end: elapsed_s, plus
    prefetch_s when an earlier op fetched its weights ahead. So the bytes charged to it and
    the time they took to move are counted together, and no point can lie above its roof:
    on every level, bytes / time <= the level's bandwidth, and FLOPs / time <= the compute
    rate of its kind (a matmul kernel the run precision's matmul peak, a vector kernel the
    vector rate), both sustained under the run's runtime."""
    tot = op_totals(t)
    bw = stream_rates(t)
    roofs = compute_roofs(t)
    acc: dict[str, list[Any]] = {}
    for i, (ty, kind) in enumerate(zip(t.ops["op_type"].tolist(), t.ops["kind"].tolist(),
                                       strict=True)):
        row = acc.setdefault(ty, [0, 0.0, np.zeros(len(bw), np.int64), kind])
        row[0] += int(tot["flops"][i])
        row[1] += float(tot["elapsed_s"][i] + tot["prefetch_s"][i])
        row[2] += tot["bytes"][i]
    out = []
    for ty, (flops, time_s, nbytes, kind) in acc.items():
        if flops <= 0 or time_s <= 0 or not nbytes.any():
            continue
        lv = int(np.argmax(nbytes / bw))  # the level its bytes keep busiest
        x = flops / nbytes[lv]
        roof = min(roofs["matmul" if kind == "matmul" else "vector"][1], x * bw[lv])
        out.append({"op_type": ty, "kind": kind, "flops": flops, "time_s": time_s,
                    "level": t.level_names[lv], "intensity": x, "achieved": flops / time_s,
                    "roof": roof})
    return sorted(out, key=lambda p: p["intensity"])


def stream_rates(t: Trace) -> np.ndarray:
    """Bytes/s each level streams at in the run (sustained bandwidth x the runtime's memory
    efficiency, as sim.planning.stream_bandwidths), innermost first."""
    eff = t.runtime.memory_efficiency if t.runtime else 1.0
    return np.asarray(t.levels["sustained_bytes_per_s"], np.float64) * eff


def compute_roofs(t: Trace) -> dict[str, tuple[str, float]]:
    """The compute ceilings of the run: "matmul" (the fastest matmul precision it used: the
    wider of weights and activations, and of embeddings and activations) and "vector", as
    (label, sustained FLOP/s)."""
    c, rt = t.hierarchy.compute, t.runtime
    m_eff, v_eff = (rt.matmul_efficiency, rt.vector_efficiency) if rt else (1.0, 1.0)
    p = t.meta.get("precision") or {}
    act = p.get("activations", "bf16")
    used = {_wider(w, act) for w in (p.get("weights", act), p.get("embeddings", act),
                                     p.get("kv_cache", act))}
    best = max(used, key=lambda d: _matmul_peak(c, d))
    return {"matmul": (f"{best} matmul", _matmul_peak(c, best) * m_eff),
            "vector": ("vector", c.vector_flops_per_s * v_eff)}


def _wider(a: str, b: str) -> str:
    """A matmul's compute precision: the wider operand dtype (workloads.compute_dtype)."""
    return b if DTYPE_BITS[b] > DTYPE_BITS[a] else a


def _matmul_peak(c: Any, dtype: str) -> float:
    """The peak a matmul in `dtype` runs at: the device's, or the next wider one's
    (sim.cost.WIDER)."""
    for d in WIDER[dtype]:
        if c.peak_flops_per_s.get(d):
            return c.peak_flops_per_s[d]
    return c.vector_flops_per_s


def _roofline(ax: Any, t: Trace) -> None:
    pts = roofline_points(t)
    if not pts:
        raise MemwallError(f"{t.path}: no op with FLOPs in the selection; nothing to plot")
    bw = stream_rates(t)
    roofs = compute_roofs(t)
    top = roofs["matmul"][1]
    ai = np.array([p["intensity"] for p in pts])
    perf = np.array([p["achieved"] for p in pts])
    x = np.logspace(np.log10(min(ai.min(), 0.1) / 2), np.log10(max(ai.max(), 1e4) * 2), 200)
    color = {}
    for i, (name, b) in enumerate(zip(t.level_names, bw.tolist(), strict=True)):
        color[name] = f"C{i}"
        ax.plot(x, np.minimum(x * b, top), lw=1.2, color=color[name],
                label=f"{name} {si(b, 'B/s')}")
    for label, rate in roofs.values():
        ax.axhline(rate, color="0.4", lw=0.8, ls="--")
        ax.text(x[-1], rate, f" {label} {si(rate, 'FLOP/s')}", va="bottom", ha="right",
                fontsize=7)
    ceilings = ax.legend(fontsize=7, loc="lower right", title_fontsize=7,
                         title="sustained bandwidth x runtime efficiency")
    ax.add_artist(ceilings)
    marks = "osD^v<>phP*X8H"
    for k, p in enumerate(pts):
        hollow = p["kind"] != "matmul"
        ax.scatter(p["intensity"], p["achieved"], s=40, marker=marks[k % len(marks)],
                   facecolors="none" if hollow else color[p["level"]],
                   edgecolors=color[p["level"]], linewidths=1.2, zorder=3,
                   label=f"{p['op_type']} ({p['level']}{', vector' if hollow else ''})")
    handles = ax.get_legend_handles_labels()[0][len(t.level_names):]
    ax.figure.legend(handles=handles, fontsize=7, loc="outside right upper",
                     title="op type (its busiest level)", title_fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per byte moved at the op type's busiest level (FLOP/byte)")
    ax.set_ylabel("achieved (FLOP/s; time includes prefetch)")
    ax.set_ylim(min(perf.min() / 3, top / 1e6), top * 3)
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
    window = float(r["end_s"][-1]) - t0
    for y, name in enumerate(shown):  # no edges: an edge would widen every ns slice
        ax.broken_barh(spans[name], (y - 0.4, 0.8), facecolors=colors[name],
                       edgecolors="none", linewidth=0)
    for k, s0 in zip(t.steps["step"].tolist(), t.steps["start_s"].tolist(), strict=True):
        ax.axvline((s0 - t0) * scale, color="0.6", lw=0.6, ls=":")
        ax.text((s0 - t0) * scale, len(shown) - 0.45, f" step {k}", fontsize=7, va="bottom")
    share = {n: sum(w for _, w in spans[n]) / scale / window for n in shown}
    ax.set_yticks(range(len(shown)), [f"{n} {100 * share[n]:.1f}%" for n in shown])
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
