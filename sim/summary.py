"""Summaries computed from the trace records (never from counters inside the engine)."""

from __future__ import annotations

from operator import sub
from typing import Any

import numpy as np

from .hierarchy import Hierarchy
from .trace import OpRecord


class Summary:
    """Fold OpRecords, as they stream, into per-run, per-step and per-op totals.

    Records are kept per step and folded a step at a time, column by column: every total is
    still a sum in record order (sum(column, total) adds left to right), so the result does not
    depend on how records were delivered (a run, or a trace read back in chunks).
    """

    def __init__(self, hier: Hierarchy, memory_efficiency: float = 1.0) -> None:
        """`memory_efficiency`: the runtime's fraction of each level's sustained bandwidth
        (Runtime.memory_efficiency), for the levels' busy time."""
        self.hier = hier
        self.memory_efficiency = memory_efficiency
        self.names = [lv.name for lv in hier.levels]
        n = len(self.names)
        self._compute_s = self._dispatch_s = self._interconnect_s = 0.0
        self._stall_s = [0.0] * n
        self._bytes = [0] * n
        self._flops = self._mops_bytes = 0
        self._n_ops = 0
        self._start_s: float | None = None
        self._end_s = 0.0
        self._phase_s: dict[str, float] = {}
        self._steps: dict[int, list[float]] = {}  # step -> [start, end, compute, wait]
        self._rows: dict[str, int] = {}  # op name -> its row in _by_op
        self._op_type: list[str] = []  # per row
        self._by_op = np.zeros((0, 4))  # per row: calls, elapsed, compute, wait (s)
        self._order: dict[tuple[str, ...], np.ndarray] = {}  # a step's op sequence -> rows
        self._pending: list[OpRecord] = []  # records of the step being received

    def add(self, r: OpRecord) -> None:
        pending = self._pending
        if pending and pending[-1][0] != r[0]:
            self._fold()
            pending = self._pending
        pending.append(r)

    @property
    def n_ops(self) -> int:
        self._fold()
        return self._n_ops

    def _fold(self) -> None:
        """Add the pending records (all of one step) to the totals."""
        recs = self._pending
        if not recs:
            return
        self._pending = []
        (steps, phases, ops, op_types, _, _, starts, ends, dispatch, compute, ic, stall, nbytes,
         flops, mops, _) = zip(*recs, strict=True)
        elapsed = list(map(sub, ends, starts))
        wait = list(map(sub, elapsed, compute))
        self._n_ops += len(recs)
        if self._start_s is None:
            self._start_s = starts[0]
        self._end_s = ends[-1]
        self._compute_s = sum(compute, self._compute_s)
        self._dispatch_s = sum(dispatch, self._dispatch_s)
        self._interconnect_s = sum(ic, self._interconnect_s)
        self._stall_s = [sum(col, s) for col, s in zip(zip(*stall, strict=True), self._stall_s,
                                                         strict=True)]
        self._bytes = [sum(col, b) for col, b in zip(zip(*nbytes, strict=True), self._bytes,
                                                       strict=True)]
        self._flops = sum(flops, self._flops)
        self._mops_bytes = sum(mops, self._mops_bytes)
        phase, step = phases[0], steps[0]
        self._phase_s[phase] = sum(elapsed, self._phase_s.get(phase, 0.0))
        s = self._steps.get(step)
        if s is None:
            self._steps[step] = [starts[0], ends[-1], sum(compute, 0.0), sum(wait, 0.0)]
        else:
            s[1], s[2], s[3] = ends[-1], sum(compute, s[2]), sum(wait, s[3])
        rows = self._order.get(ops)
        if rows is None:
            rows = self._order[ops] = self._rows_of(ops, op_types)
        np.add.at(self._by_op, rows,  # in record order, an op seen twice in a step included
                  np.column_stack((np.ones(len(recs)), elapsed, compute, wait)))

    def _rows_of(self, ops: tuple[str, ...], op_types: tuple[str, ...]) -> np.ndarray:
        known = self._rows
        for op, kind in zip(ops, op_types, strict=True):
            if op not in known:
                known[op] = len(self._op_type)
                self._op_type.append(kind)
        if len(self._op_type) > len(self._by_op):
            grown = np.zeros((len(self._op_type), 4))
            grown[:len(self._by_op)] = self._by_op
            self._by_op = grown
        return np.array([known[op] for op in ops], dtype=np.intp)

    # -- results ---------------------------------------------------------------------------
    def busy_s(self) -> dict[str, float]:
        """Total busy time of every resource: the bound is the largest."""
        self._fold()
        busy = {"compute": self._compute_s, "dispatch": self._dispatch_s}
        for lv, b in zip(self.hier.levels, self._bytes, strict=True):
            busy[lv.name] = b / (lv.sustained_bytes_per_s * self.memory_efficiency)
        busy["interconnect"] = self._interconnect_s
        return busy

    def result(self, meta: dict[str, Any], top: int = 10) -> dict[str, Any]:
        """The JSON summary, in SI units (s, bytes, FLOPs). `meta` supplies the run's inputs
        (workload, hierarchy, batch, prompt_len, gen_len, tp, params, ...)."""
        self._fold()
        total = self._end_s - (self._start_s or 0.0)
        decode = [s for k, s in sorted(self._steps.items()) if k > 0]
        decode_s = sum(s[1] - s[0] for s in decode) / len(decode) if decode else None
        busy = self.busy_s()
        bound_by = max(busy, key=busy.__getitem__)
        stall = {n: s for n, s in zip(self.names, self._stall_s, strict=True)}
        stall["dispatch"] = self._dispatch_s
        stall["interconnect"] = self._interconnect_s
        by_op = {op: self._by_op[i].tolist() for op, i in self._rows.items()}
        by_type: dict[str, list[float]] = {}
        for op, row in by_op.items():
            acc = by_type.setdefault(self._op_type[self._rows[op]], [0, 0.0, 0.0, 0.0])
            for i, v in enumerate(row):
                acc[i] += v
        ranked = sorted(by_op.items(), key=lambda kv: (-kv[1][3], kv[0]))[:top]
        out = dict(meta)
        out.update(
            params=meta.get("params"),
            flops=self._flops,
            mops_bytes=self._mops_bytes,
            arithmetic_intensity=self._flops / self._mops_bytes if self._mops_bytes else None,
            prefill_s=self._steps[0][1] - self._steps[0][0] if 0 in self._steps else 0.0,
            decode_s_per_token=decode_s,
            tokens_per_s=1.0 / decode_s if decode_s else None,
            total_s=total,
            compute_s=self._compute_s,
            stall_s=stall,
            bytes_by_level=dict(zip(self.names, self._bytes, strict=True)),
            bound_s=busy[bound_by],
            bound_by=bound_by,
            verdict=f"memory-bound ({bound_by})" if bound_by in self.names else f"{bound_by}-bound",
            busy_s=busy,
            phase_s=dict(self._phase_s),
            n_ops=self._n_ops,
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
