"""Offline inspection of a trace: the run's summary rebuilt from its records (through Summary,
as the run did), the op executions that stalled most, and per-layer and per-token breakdowns
(sim.trace.Totals, as every total), restricted to a token range, a layer or an op kind."""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import MemwallError, cut
from .report import Scope, format_report, si
from .summary import Summary
from .trace import Totals, derive
from .trace_file import RECORD_COLUMNS
from .trace_reader import (
    READ_ROWS,
    RecordDigests,
    Tokens,
    TraceFileError,
    _reading,
    check_records,
    decoded,
    read_trace,
)

KINDS = ("matmul", "vector", "collective")
TOKEN_ROWS = 32  # per-token lines printed before steps are grouped into ranges


@dataclass(frozen=True)
class Selection:
    tokens: Tokens = None  # half-open step range
    layer: int | None = None
    kind: str | None = None  # matmul | vector | collective

    def describe(self) -> str:
        parts = []
        if self.tokens is not None:
            a, b = self.tokens
            parts.append(f"tokens {'' if a is None else a}:{'' if b is None else b}")
        if self.layer is not None:
            parts.append(f"layer {self.layer}")
        if self.kind is not None:
            parts.append(f"{self.kind} ops")
        return ", ".join(parts)


def token_range(text: str) -> tuple[int | None, int | None]:
    """'A:B' (half-open, either side may be empty) or 'A' (that step alone)."""
    wanted = "expected A:B (steps A to B-1, 0 <= A < B), A:, :B or A"
    try:
        if ":" not in text:
            a = int(text)
            lo_hi: tuple[int | None, int | None] = (a, a + 1)
        else:
            lo, hi = text.split(":", 1)
            lo_hi = (int(lo) if lo.strip() else None, int(hi) if hi.strip() else None)
    except ValueError:
        raise MemwallError(f"--tokens {text!r}: {wanted}") from None
    a, b = lo_hi
    if (a is not None and a < 0) or (b is not None and b < 1) or (
            a is not None and b is not None and b <= a):
        raise MemwallError(f"--tokens {text!r}: an empty range; {wanted}")
    return lo_hi


def _breakdown(t: Totals, key: str, names: list[str]) -> list[dict[str, Any]]:
    """Per key (layer or step), in key order: ops, elapsed, compute, dispatch, interconnect,
    and stall and bytes per level."""
    out = []
    for k in sorted(t.keys):
        v = t.row(k)
        out.append({key: k, "n_ops": v["n"], "elapsed_s": v["elapsed_s"],
                    "compute_s": v["compute_s"], "dispatch_s": v["dispatch_s"],
                    "interconnect_s": v["interconnect_s"],
                    "stall_s": dict(zip(names, v["stall_s"], strict=True)),
                    "bytes": dict(zip(names, v["bytes"], strict=True))})
    return out


SUMMARY_CHECKED = ("n_ops", "flops", "mops_bytes", "total_s", "compute_s", "prefill_s")


def _check_summary(path: str, stored: dict[str, Any], rebuilt: dict[str, Any]) -> None:
    """The summary attribute against the one the records give (to 1e-9 relative)."""
    for key in SUMMARY_CHECKED:
        if key not in stored:  # a serving run's summary holds its own figures (the digests
            continue  # still guard every byte of it)
        a, b = stored.get(key), rebuilt.get(key)
        if a is None and b is None:
            continue
        if (not isinstance(a, (int, float)) or isinstance(a, bool)
                or abs(a - b) > 1e-9 * max(abs(a), abs(b))):
            raise TraceFileError(f"{path}: damaged memwall trace: the summary's {key} = "
                                 f"{cut(repr(a))} but the records give {b!r}")


def inspect_trace(path: str, sel: Selection = Selection(), top: int = 10) -> dict[str, Any]:
    """Everything `run.py inspect` shows, as JSON-ready data."""
    t = read_trace(path, tokens=sel.tokens, records=False)
    names = t.level_names
    summary = Summary(t.hierarchy, t.runtime.memory_efficiency if t.runtime else 1.0, t.sample)
    layers, tokens = Totals(len(names)), Totals(len(names))
    worst: list[tuple[float, int, dict[str, Any]]] = []
    op_layer = t.ops["layer"]
    kind_ok = None if sel.kind is None else np.array([k == sel.kind for k in t.ops["kind"]], bool)
    lo, hi = t.steps_rows()
    with _reading(path) as f:
        digests = RecordDigests(f, path, (lo, hi))
        for i in range(lo, hi, READ_ROWS):
            d = {c: f[f"records/{c}"][i:min(hi, i + READ_ROWS)] for c in RECORD_COLUMNS}
            check_records(d, len(t.ops["name"]), len(t.attrs["phases"]), path)
            digests.add(d)
            mask = np.ones(len(d["op"]), dtype=bool)
            if sel.layer is not None:
                mask &= op_layer[d["op"]] == sel.layer
            if kind_ok is not None:
                mask &= kind_ok[d["op"]]
            if not mask.all():
                d = {c: v[mask] for c, v in d.items()}
            cols = derive(decoded(d, t))
            summary.add_columns(cols)
            layers.add(cols["layer"], cols)
            tokens.add(cols["step"], cols)
            _keep_worst(worst, cols, names, i, top)
        digests.check()
    if summary.n_ops == 0:
        raise MemwallError(f"{path}: no op executions match {sel.describe() or 'the trace'}")
    out = summary.result(t.meta, top=max(top, 10))
    if digests.on and sel == Selection():
        _check_summary(path, t.summary, out)
    chosen = _scope(out, sel, tokens, path)
    return {
        "file": path,
        "selection": chosen,
        "trace": {k: v for k, v in t.attrs.items() if k != "phases"},
        "summary": out,
        "most_stalled": [row for _, _, row in sorted(worst, key=lambda w: (-w[0], -w[1]))],
        "by_layer": _breakdown(layers, "layer", names),
        "by_token": _breakdown(tokens, "step", names),
    }


def _scope(out: dict[str, Any], sel: Selection, tokens: Totals, path: str) -> dict[str, Any]:
    """What `sel` selected, and `out` (the selection's summary) restricted to the figures that
    mean something for it: its ops' time (total_s, the sum of their elapsed times, which
    compute and the stalls add up to) for any selection; the prefill only if step 0 is in
    it; per-token figures and the bound only for whole steps (no layer or op-kind filter)."""
    whole = sel.layer is None and sel.kind is None
    steps = sorted(tokens.keys)
    time_s = float(np.sum(tokens["elapsed_s"]))
    every = int(np.sum(read_trace(path, records=False).steps["n_ops"]))
    if sel != Selection():
        out["total_s"] = time_s
    if 0 not in steps or not whole:
        out.update(prefill_s=None, ttft_s=None)
    if not whole:
        out.update(decode_s_per_token=None, tpot_s=None, tokens_per_s=None,
                   throughput_tokens_per_s=None, bound_s=None)
    return {**asdict(sel), "text": sel.describe(), "whole_steps": whole,
            "steps": [steps[0], steps[-1]], "n_steps": len(steps), "n_ops": out["n_ops"],
            "of_ops": every, "time_s": time_s}


def _keep_worst(heap: list[tuple[float, int, dict[str, Any]]], d: dict[str, Any],
                levels: list[str], row0: int, k: int) -> None:
    """Keep the k op executions with the most stall (elapsed - compute, `wait_s`) seen so far;
    `d` holds the columns of the schema (sim.trace)."""
    wait = d["wait_s"]
    if len(wait) == 0 or k <= 0:
        return
    cand = np.argsort(-wait, kind="stable")[:k]
    for j in cand.tolist():
        w = float(wait[j])
        if len(heap) >= k and w <= heap[0][0]:
            continue
        stall = d["stall_s"][j]
        row = {"step": int(d["step"][j]), "op": str(d["op"][j]),
               "op_type": str(d["op_type"][j]), "layer": int(d["layer"][j]),
               "elapsed_s": float(d["elapsed_s"][j]), "stall_s": w,
               "worst_level": levels[int(np.argmax(stall))] if stall.any() else None,
               "stall_by_level_s": dict(zip(levels, stall.tolist(), strict=True))}
        item = (w, -(row0 + j), row)
        if len(heap) < k:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)


def format_inspection(res: dict[str, Any], trace_hier: Any, top: int = 10,
                      header: str | None = None) -> str:
    """The run's report (or `header`, a report of its own: a serving run's), then the
    most-stalled executions, per layer and per token."""
    s, sel = res["summary"], res["selection"]
    scope = Scope(sel["whole_steps"], sel["n_steps"]) if sel["text"] else None
    lines = [format_report(s, trace_hier, top=top, scope=scope) if header is None else header]
    if sel["text"]:
        a, b = sel["steps"]
        span = f"step {a}" if a == b else f"steps {a}-{b}"
        lines.insert(0, f"trace {res['file']}: selected {sel['text']}: {sel['n_ops']:,} of "
                        f"{sel['of_ops']:,} op executions ({span}), "
                        f"{si(sel['time_s'], 's')} of their time")
    names = [n for n, v in s["stall_s"].items() if v > 0]
    levels = [lv.name for lv in trace_hier.levels]
    moved = [n for n in levels if n in names]
    lines += ["", f"  op executions that stalled most (top {top})"]
    for r in res["most_stalled"][:top]:
        lines.append(f"    step {r['step']:<5} {r['op']:<26} stalled {si(r['stall_s'], 's'):>9}"
                     f" of {si(r['elapsed_s'], 's'):>9}  mostly on {r['worst_level'] or '-'}")
    head = "".join(f"{'stall ' + n:>{_width(n)}}" for n in names) + "".join(
        f"{'bytes ' + n:>{_width(n)}}" for n in moved)
    lines += ["", f"  {'layer':>7} {'ops':>7} {'elapsed':>10} {'compute':>10}{head}"]
    for r in res["by_layer"]:
        label = "other" if r["layer"] < 0 else str(r["layer"])
        lines.append(f"  {label:>7} {r['n_ops']:>7} " + _cells(r, names, moved))
    rows = _grouped(res["by_token"])
    lines += ["", f"  {'step':>11} {'ops':>7} {'elapsed':>10} {'compute':>10}{head}"]
    for label, r in rows:
        lines.append(f"  {label:>11} {r['n_ops']:>7} " + _cells(r, names, moved))
    return "\n".join(lines)


def _cells(r: dict[str, Any], names: list[str], moved: list[str]) -> str:
    extra = {"dispatch": r["dispatch_s"], "interconnect": r["interconnect_s"]}
    stall = [r["stall_s"].get(n, extra.get(n, 0.0)) for n in names]
    return (f"{si(r['elapsed_s'], 's'):>10} {si(r['compute_s'], 's'):>10}"
            + "".join(f"{si(v, 's'):>{_width(n)}}" for n, v in zip(names, stall, strict=True))
            + "".join(f"{si(r['bytes'][n], 'B'):>{_width(n)}}" for n in moved))


def _width(level: str) -> int:
    return max(11, len(level) + 8)


def _grouped(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every step if few; otherwise TOKEN_ROWS ranges of steps, summed (step 0 alone)."""
    if len(rows) <= TOKEN_ROWS:
        return [(str(r["step"]), r) for r in rows]
    head = [(str(rows[0]["step"]), rows[0])] if rows[0]["step"] == 0 else []
    rest = rows[len(head):]
    out = list(head)
    for part in np.array_split(np.arange(len(rest)), TOKEN_ROWS - len(head)):
        group = [rest[i] for i in part.tolist()]
        total = _sum_rows(group)
        out.append((f"{group[0]['step']}-{group[-1]['step']}", total))
    return out


def _sum_rows(group: list[dict[str, Any]]) -> dict[str, Any]:
    acc: dict[str, Any] = {k: 0 for k in ("n_ops", "elapsed_s", "compute_s", "dispatch_s",
                                          "interconnect_s")}
    acc["stall_s"], acc["bytes"] = {}, {}
    for r in group:
        for k in ("n_ops", "elapsed_s", "compute_s", "dispatch_s", "interconnect_s"):
            acc[k] += r[k]
        for k in ("stall_s", "bytes"):
            for n, v in r[k].items():
                acc[k][n] = acc[k].get(n, 0) + v
    return acc
