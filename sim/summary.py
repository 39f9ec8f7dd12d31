"""Summaries computed from the trace records (never from counters inside the engine)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .hierarchy import Hierarchy
from .trace import OpRecord


class Summary:
    """Fold OpRecords, as they stream, into per-run, per-step and per-op totals."""

    def __init__(self, hier: Hierarchy) -> None:
        self.hier = hier
        self.names = [lv.name for lv in hier.levels]
        n = len(self.names)
        self.compute_s = self.dispatch_s = self.interconnect_s = 0.0
        self.stall_s = [0.0] * n
        self.bytes = [0] * n
        self.flops = self.mops_bytes = 0
        self.n_ops = 0
        self.start_s: float | None = None
        self.end_s = 0.0
        self.phase_s: dict[str, float] = defaultdict(float)
        self.steps: dict[int, list[float]] = {}  # step -> [start, end, compute, wait]
        self.by_op: dict[str, list[float]] = {}  # op name -> [calls, elapsed, compute, wait]
        self.by_type: dict[str, list[float]] = {}

    def add(self, r: OpRecord) -> None:
        el = r.end_s - r.start_s
        wait = el - r.compute_s
        self.n_ops += 1
        if self.start_s is None:
            self.start_s = r.start_s
        self.end_s = r.end_s
        self.compute_s += r.compute_s
        self.dispatch_s += r.dispatch_s
        self.interconnect_s += r.interconnect_s
        st, by = self.stall_s, self.bytes
        for i, s in enumerate(r.stall_s):
            st[i] += s
        for i, b in enumerate(r.bytes):
            by[i] += b
        self.flops += r.flops
        self.mops_bytes += r.mops_bytes
        self.phase_s[r.phase] += el
        s = self.steps.get(r.step)
        if s is None:
            self.steps[r.step] = [r.start_s, r.end_s, r.compute_s, wait]
        else:
            s[1] = r.end_s
            s[2] += r.compute_s
            s[3] += wait
        for key, table in ((r.op, self.by_op), (r.op_type, self.by_type)):
            row = table.get(key)
            if row is None:
                table[key] = [1, el, r.compute_s, wait]
            else:
                row[0] += 1
                row[1] += el
                row[2] += r.compute_s
                row[3] += wait

    # -- results ---------------------------------------------------------------------------
    def busy_s(self) -> dict[str, float]:
        """Total busy time of every resource: the bound is the largest."""
        busy = {"compute": self.compute_s, "dispatch": self.dispatch_s}
        for lv, b in zip(self.hier.levels, self.bytes, strict=True):
            busy[lv.name] = b / lv.sustained_bytes_per_s
        busy["interconnect"] = self.interconnect_s
        return busy

    def result(self, meta: dict[str, Any], top: int = 10) -> dict[str, Any]:
        """The JSON summary, in SI units (s, bytes, FLOPs). `meta` supplies the run's inputs
        (workload, hierarchy, batch, prompt_len, gen_len, tp, params, ...)."""
        total = self.end_s - (self.start_s or 0.0)
        decode = [s for k, s in sorted(self.steps.items()) if k > 0]
        decode_s = sum(s[1] - s[0] for s in decode) / len(decode) if decode else None
        busy = self.busy_s()
        bound_by = max(busy, key=busy.__getitem__)
        stall = {n: s for n, s in zip(self.names, self.stall_s, strict=True)}
        stall["dispatch"] = self.dispatch_s
        stall["interconnect"] = self.interconnect_s
        ranked = sorted(self.by_op.items(), key=lambda kv: (-kv[1][3], kv[0]))[:top]
        out = dict(meta)
        out.update(
            params=meta.get("params"),
            flops=self.flops,
            mops_bytes=self.mops_bytes,
            arithmetic_intensity=self.flops / self.mops_bytes if self.mops_bytes else None,
            prefill_s=self.steps[0][1] - self.steps[0][0] if 0 in self.steps else 0.0,
            decode_s_per_token=decode_s,
            tokens_per_s=1.0 / decode_s if decode_s else None,
            total_s=total,
            compute_s=self.compute_s,
            stall_s=stall,
            bytes_by_level=dict(zip(self.names, self.bytes, strict=True)),
            bound_s=busy[bound_by],
            bound_by=bound_by,
            busy_s=busy,
            phase_s=dict(self.phase_s),
            n_ops=self.n_ops,
            top_stalls=[
                {"op": k, "calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in ranked
            ],
            by_op_type={
                k: {"calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in sorted(self.by_type.items())
            },
        )
        return out
