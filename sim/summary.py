"""Summaries computed from the trace records (never from counters inside the engine)."""

from __future__ import annotations

from collections import defaultdict
from operator import add
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
        self.op_type: dict[str, str] = {}  # op name -> op type

    def add(self, r: OpRecord) -> None:
        (step, phase, op, op_type, _, _, start, end, dispatch, compute, ic, stall, nbytes,
         flops, mops, _) = r
        el = end - start
        wait = el - compute
        self.n_ops += 1
        if self.start_s is None:
            self.start_s = start
        self.end_s = end
        self.compute_s += compute
        self.dispatch_s += dispatch
        self.interconnect_s += ic
        self.stall_s = list(map(add, self.stall_s, stall))
        self.bytes = list(map(add, self.bytes, nbytes))
        self.flops += flops
        self.mops_bytes += mops
        self.phase_s[phase] += el
        s = self.steps.get(step)
        if s is None:
            self.steps[step] = [start, end, compute, wait]
        else:
            s[1] = end
            s[2] += compute
            s[3] += wait
        row = self.by_op.get(op)
        if row is None:
            self.by_op[op] = [1, el, compute, wait]
            self.op_type[op] = op_type
        else:
            row[0] += 1
            row[1] += el
            row[2] += compute
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
        by_type: dict[str, list[float]] = {}
        for op, row in self.by_op.items():
            acc = by_type.setdefault(self.op_type[op], [0, 0.0, 0.0, 0.0])
            for i, v in enumerate(row):
                acc[i] += v
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
            verdict=f"memory-bound ({bound_by})" if bound_by in self.names else f"{bound_by}-bound",
            busy_s=busy,
            phase_s=dict(self.phase_s),
            n_ops=self.n_ops,
            top_stalls=[
                {"op": k, "calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in ranked
            ],
            by_op_type={
                k: {"calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in sorted(by_type.items())
            },
        )
        return out
