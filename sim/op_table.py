"""The per-op-type table of a run (`memwall --ops FILE.csv`): every sum of the record schema
(sim.trace.FIELDS and DERIVED), per op type, folded from the records as they stream, so no
trace is needed. One row per op type, most time first:

    op_type, kind, calls, share (of the run's op time), elapsed_s, compute_s, dispatch_s,
    interconnect_s, stall_s.<level>..., bytes.<level>..., flops, mops_bytes, prefetch_s,
    hit_bytes.<level>..., lookup_bytes.<level>..., wait_s

Per-level sums are one column per level, innermost first, named as Trace.table names them.

    >>> from sim.trace import OpRecord
    >>> t = OpTable(["l2", "hbm"])
    >>> t.add(OpRecord(1, "decode", "h0.qkv", "qkv", "matmul", 0, 0.0, 3.0, 1.0, 1.0, 0.0,
    ...                (0.0, 1.0), (64, 64), 128, 64, 1.0, 0.0, (0, 0), (64, 0)))
    >>> t.add(OpRecord(1, "decode", "h0.norm", "norm", "vector", 0, 3.0, 4.0, 1.0, 0.0, 0.0,
    ...                (0.0, 0.0), (8, 0), 4, 8, 4.0, 0.0, (0, 0), (0, 0)))
    >>> [(r["op_type"], r["calls"], r["share"], r["bytes.hbm"]) for r in t.rows()]
    [('qkv', 1, 0.75, 64), ('norm', 1, 0.25, 0)]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from .opgraph import OP_KINDS
from .trace import DERIVED, FIELDS, SUM, OpRecord, Records, Totals

FOLD_ROWS = 8192  # records buffered before they are folded
_SUMS = [f for f in (*FIELDS, *DERIVED) if f.reduce == SUM]
_FIRST = ("elapsed_s", "compute_s", "dispatch_s", "interconnect_s")  # columns shown first


class OpTable:
    """Fold OpRecords into per-op-type totals (a sink for memwall.run)."""

    def __init__(self, level_names: Sequence[str]) -> None:
        self.level_names = list(level_names)
        self._totals = Totals(len(self.level_names), keep=("kind",))
        self._types: dict[str, int] = {}  # op type -> key, in order of first use
        self._pending = Records()

    def add(self, r: OpRecord) -> None:
        self._pending.add(r)
        if len(self._pending) >= FOLD_ROWS:
            self._fold()

    def _fold(self) -> None:
        if len(self._pending):
            cols = self._pending.columns()
            types = self._types
            keys = np.array([types.setdefault(t, len(types)) for t in cols["op_type"]],
                            dtype=np.int64)
            cols["kind"] = np.array([_KIND_CODE[k] for k in cols["kind"]], dtype=np.int32)
            self._totals.add(keys, cols)

    def columns(self) -> list[str]:
        """The table's columns, in order."""
        out = ["op_type", "kind", "calls", "share", *_FIRST]
        for f in _SUMS:
            if f.name in _FIRST:
                continue
            out += [f"{f.name}.{n}" for n in self.level_names] if f.per_level else [f.name]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per op type, most elapsed time first (ties by name)."""
        self._fold()
        t = self._totals
        names = list(self._types)
        total = float(np.sum(t["elapsed_s"])) if t.keys else 0.0
        out = []
        for k in t.keys:
            v = t.row(k)
            row: dict[str, Any] = {"op_type": names[k], "kind": _KINDS[v["kind"]],
                                   "calls": v["n"],
                                   "share": v["elapsed_s"] / total if total else 0.0}
            for f in _SUMS:
                if f.per_level:
                    row.update({f"{f.name}.{n}": x
                                for n, x in zip(self.level_names, v[f.name], strict=True)})
                else:
                    row[f.name] = v[f.name]
            out.append(row)
        return sorted(out, key=lambda r: (-r["elapsed_s"], r["op_type"]))

    def csv_text(self) -> str:
        """The table as CSV text (a header, then rows() in order)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows())
        return buf.getvalue()


_KINDS = OP_KINDS
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
