"""Chrome trace-event JSON (opens in ui.perfetto.dev and chrome://tracing) for a window of steps.

One process (the run), one track per resource:
    steps & ops          a slice per step, the op slices nested inside it (all record fields)
    dispatch             each op's dispatch overhead
    compute              each op's compute time, from the instant compute began
    <level> (memory)     the op's transfer window through that level (end of dispatch to end of
                         op) when any bytes crossed it; bytes, stall and busy time as args
    interconnect         each collective's time on the links

Op, dispatch and compute slices are exact; a level's slice is the op's transfer window (the
trace keeps bytes per level, not the instants of each flow).
"""

from __future__ import annotations

import json
import os
from typing import Any

from .outfile import write_text
from .trace_reader import Tokens, Trace, read_trace

DEFAULT_STEPS = 3  # decode steps exported when no token range is given
US = 1e6  # trace-event timestamps are in microseconds


def default_window(trace: Trace) -> tuple[int, int]:
    """The first DEFAULT_STEPS decode steps, or the only pass of an encoder."""
    steps = trace.steps["step"]
    decode = steps[steps > 0]
    if len(decode) == 0:
        return 0, 1
    first = int(decode[0])
    return first, first + DEFAULT_STEPS


def trace_events(t: Trace) -> dict[str, Any]:
    """The Chrome trace-event document for the records loaded in `t`."""
    m = t.meta
    tracks = ["steps & ops", "dispatch", "compute", *t.level_names, "interconnect"]
    tid = {name: i + 1 for i, name in enumerate(tracks)}
    ev: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": 1, "args": {
        "name": f"memwall: {m.get('workload')} on {m.get('hierarchy')}"}}]
    for name, i in tid.items():
        label = f"{name} (memory)" if name in t.level_names else name
        ev.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": i, "args": {"name": label}})
        ev.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i,
                   "args": {"sort_index": i}})
    s = t.steps
    for k, t0, t1, n in zip(s["step"].tolist(), s["start_s"].tolist(), s["end_s"].tolist(),
                            s["n_ops"].tolist(), strict=True):
        ev.append(_slice(f"step {k}", "step", t0, t1 - t0, tid["steps & ops"],
                         {"step": k, "n_ops": n}))
    sustained = t.levels["sustained_bytes_per_s"].tolist()
    for r in t.op_records():
        td = r.start_s + r.dispatch_s
        args = {"step": r.step, "op_type": r.op_type, "kind": r.kind, "layer": r.layer,
                "compute_s": r.compute_s, "dispatch_s": r.dispatch_s, "flops": r.flops,
                "mops_bytes": r.mops_bytes, "interconnect_s": r.interconnect_s,
                **{f"stall_s.{n}": v for n, v in zip(t.level_names, r.stall_s, strict=True)}}
        ev.append(_slice(r.op, r.kind, r.start_s, r.end_s - r.start_s, tid["steps & ops"], args))
        if r.dispatch_s > 0:
            ev.append(_slice(r.op, "dispatch", r.start_s, r.dispatch_s, tid["dispatch"], None))
        if r.compute_s > 0:
            ev.append(_slice(r.op, r.kind, r.compute_start_s, r.compute_s, tid["compute"], None))
        if r.interconnect_s > 0:
            ev.append(_slice(r.op, "collective", td, r.interconnect_s, tid["interconnect"], None))
        for name, b, st, bw in zip(t.level_names, r.bytes, r.stall_s, sustained, strict=True):
            if b > 0:
                ev.append(_slice(r.op, "transfer", td, r.end_s - td, tid[name],
                                 {"bytes": b, "stall_s": st, "busy_s": b / bw}))
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"workload": json.dumps(m), "source": t.path}}


def _slice(name: str, cat: str, t0: float, dur: float, tid: int,
           args: dict[str, Any] | None) -> dict[str, Any]:
    e: dict[str, Any] = {"name": name, "cat": cat, "ph": "X", "ts": t0 * US, "dur": dur * US,
                         "pid": 1, "tid": tid}
    if args:
        e["args"] = args
    return e


def export_perfetto(path: str, out: str | os.PathLike[str], tokens: Tokens = None) -> int:
    """Write the timeline of steps `tokens` (default: default_window) of trace `path` to `out`,
    atomically. Returns the number of op executions exported."""
    if tokens is None:
        tokens = default_window(read_trace(path, records=False))
    t = read_trace(path, tokens=tokens)
    doc = trace_events(t)
    write_text(out, json.dumps(doc, separators=(",", ":")))
    return int(t.rows[1] - t.rows[0])
