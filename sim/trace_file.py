"""HDF5 trace files (schema 1): the flat OpRecords of a run, streamed to disk, and read back.

Layout (every table is columnar: one 1-D dataset per column, or 2-D (rows, levels) for the
per-level columns; chunked, gzip with shuffle, fletcher32 checksums; `units` attribute on each):

    /                attrs: format="memwall-trace", schema_version, memwall_version,
                     command_line, created (ISO 8601, UTC), hierarchy, runtime, workload,
                     summary, provenance (JSON: what produced the run, as in the summary)
    /lookup/         op_types, kinds, phases: names stored once, referred to by index
    /levels/         name, capacity_bytes, bandwidth_bytes_per_s, efficiency, latency_s,
                     sustained_bytes_per_s (innermost first)
    /ops/            the static op table: name, op_type, kind (indices into /lookup), layer
    /records/        one row per op execution: step, op (index into /ops), phase, start_s,
                     end_s, dispatch_s, compute_s, interconnect_s, stall_s (n, levels),
                     bytes (n, levels), flops, mops_bytes
    /steps/          one row per step (token): step, phase, first (row in /records), n_ops,
                     start_s, end_s, compute_s, dispatch_s, interconnect_s, stall_s, bytes,
                     flops, mops_bytes

The file is written under a hidden temporary name and put in place only when complete
(sim/outfile.py); a run that raises removes it.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .hierarchy import Hierarchy
from .hierarchy_file import hierarchy_to_dict
from .outfile import Staged, memwall_version
from .runtime import Runtime
from .runtime_file import runtime_to_dict
from .summary import Summary
from .trace import OpRecord

FORMAT = "memwall-trace"
SCHEMA_VERSION = 1
CHUNK_ROWS = 65536  # records buffered in memory and written per HDF5 chunk
_FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True,
                            "fletcher32": True}
_STR = h5py.string_dtype()
_TYPECODE = {"int32": "i", "uint8": "B", "float64": "d", "int64": "q"}  # numpy -> array.array

# column -> (dtype, units); "L" in the shape marks a (rows, levels) column
RECORD_COLUMNS: dict[str, tuple[str, str]] = {
    "step": ("int32", "step (0 = prefill or encoder pass, k = decode step k)"),
    "op": ("int32", "index into /ops"),
    "phase": ("uint8", "index into /lookup/phases"),
    "start_s": ("float64", "s"),
    "end_s": ("float64", "s"),
    "dispatch_s": ("float64", "s"),
    "compute_s": ("float64", "s"),
    "interconnect_s": ("float64", "s"),
    "stall_s": ("float64", "s, per level (innermost first)"),
    "bytes": ("int64", "bytes, per level (innermost first)"),
    "flops": ("int64", "FLOP"),
    "mops_bytes": ("int64", "bytes read and written at the op boundary"),
    "compute_start_s": ("float64", "s, when the compute units began the op"),
}
STEP_COLUMNS: dict[str, tuple[str, str]] = {
    "step": ("int32", "step"),
    "phase": ("uint8", "index into /lookup/phases"),
    "first": ("int64", "first row in /records"),
    "n_ops": ("int64", "op executions"),
    "start_s": ("float64", "s"),
    "end_s": ("float64", "s"),
    "compute_s": ("float64", "s"),
    "dispatch_s": ("float64", "s"),
    "interconnect_s": ("float64", "s"),
    "stall_s": ("float64", "s, per level (innermost first)"),
    "bytes": ("int64", "bytes, per level (innermost first)"),
    "flops": ("int64", "FLOP"),
    "mops_bytes": ("int64", "bytes"),
}
PER_LEVEL = ("stall_s", "bytes")
_SUMS = ("compute_s", "dispatch_s", "interconnect_s", "stall_s", "bytes", "flops", "mops_bytes")


def run_meta(summary: dict[str, Any], hier: Hierarchy) -> dict[str, Any]:
    """The run's inputs (workload, batch, lengths, precision, tp, params, ...): the keys of the
    summary that Summary.result does not compute, in their original order."""
    computed = set(Summary(hier).result({})) - {"params"}
    return {k: v for k, v in summary.items() if k not in computed}


class TraceWriter:
    """Streams OpRecords into an HDF5 trace; `add` is a sink for simulate_run.

    with TraceWriter("run.h5", hier, argv) as w:
        summary = simulate_run(spec, hier, sinks=(w.add,))
        w.finish(summary)
    """

    def __init__(self, path: str | os.PathLike[str], hier: Hierarchy,
                 command_line: Sequence[str] = (), provenance: dict[str, Any] | None = None,
                 chunk_rows: int = CHUNK_ROWS, runtime: Runtime | None = None) -> None:
        self.path = Path(path)
        self.hier = hier
        self.runtime = runtime
        self.command_line = list(command_line)
        self.provenance = provenance or {}
        self.chunk_rows = chunk_rows
        self.n_levels = len(hier.levels)
        self.staged = Staged(path)
        self.tmp = self.staged.tmp
        self.f: h5py.File | None = h5py.File(self.tmp, "w")
        self.op_index: dict[tuple[str, str, str, int], int] = {}
        self.types: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.phases: dict[str, int] = {}
        self._new_buffer()
        self.n = 0  # records written
        self.steps: dict[int, dict[str, Any]] = {}
        group = self.f.create_group("records")
        self.records = {c: self._column(group, c, dt, u, chunk_rows)
                        for c, (dt, u) in RECORD_COLUMNS.items()}

    def _column(self, group: h5py.Group, name: str, dtype: Any, units: str,
                chunk: int) -> h5py.Dataset:
        wide = name in PER_LEVEL
        shape = (0, self.n_levels) if wide else (0,)
        ds = group.create_dataset(name, shape=shape, maxshape=(None,) + shape[1:], dtype=dtype,
                                  chunks=(chunk,) + shape[1:], **_FILTERS)
        ds.attrs["units"] = units
        return ds

    # -- streaming ---------------------------------------------------------------------------
    def _new_buffer(self) -> None:
        """Column buffers as array.array: plain C storage the garbage collector never scans."""
        self.buf = {c: array(_TYPECODE[dt]) for c, (dt, _) in RECORD_COLUMNS.items()}
        b = self.buf
        self._append = (b["step"].append, b["op"].append, b["phase"].append,
                        b["start_s"].append, b["end_s"].append, b["dispatch_s"].append,
                        b["compute_s"].append, b["interconnect_s"].append, b["stall_s"].extend,
                        b["bytes"].extend, b["flops"].append, b["mops_bytes"].append,
                        b["compute_start_s"].append)

    def add(self, r: OpRecord) -> None:
        key = (r.op, r.op_type, r.kind, r.layer)
        i = self.op_index.get(key)
        if i is None:
            i = self.op_index[key] = len(self.op_index)
            self.types.setdefault(r.op_type, len(self.types))
            self.kinds.setdefault(r.kind, len(self.kinds))
        ph = self.phases.get(r.phase)
        if ph is None:
            ph = self.phases[r.phase] = len(self.phases)
        step, op, phase, t0, t1, d, c, ic, st, by, fl, mo, cs = self._append
        step(r.step)
        op(i)
        phase(ph)
        t0(r.start_s)
        t1(r.end_s)
        d(r.dispatch_s)
        c(r.compute_s)
        ic(r.interconnect_s)
        st(r.stall_s)
        by(r.bytes)
        fl(r.flops)
        mo(r.mops_bytes)
        cs(r.compute_start_s)
        if len(self.buf["step"]) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        rows = len(self.buf["step"])
        if rows == 0:
            return
        data: dict[str, np.ndarray] = {}
        for c, (dt, _) in RECORD_COLUMNS.items():
            v = np.frombuffer(self.buf[c], dtype=dt)
            data[c] = v.reshape(rows, self.n_levels) if c in PER_LEVEL else v
        end = self.n + rows
        for c, ds in self.records.items():
            ds.resize(end, axis=0)
            ds[self.n:end] = data[c]
        self._fold_steps(data)
        self.n = end
        del data
        self._new_buffer()

    def _fold_steps(self, d: dict[str, np.ndarray]) -> None:
        """Per-step totals of one buffer (steps arrive in order, one may span buffers)."""
        steps, first, counts = np.unique(d["step"], return_index=True, return_counts=True)
        order = np.argsort(first)
        for k, i0, n in zip(steps[order], first[order], counts[order], strict=True):
            sl = slice(int(i0), int(i0 + n))
            row = self.steps.get(int(k))
            if row is None:
                row = self.steps[int(k)] = {
                    "phase": int(d["phase"][i0]), "first": self.n + int(i0), "n_ops": 0,
                    "start_s": float(d["start_s"][i0]),
                    **{c: np.zeros(self.n_levels) if c in PER_LEVEL else 0 for c in _SUMS},
                }
                row["bytes"] = np.zeros(self.n_levels, dtype=np.int64)
            row["n_ops"] += int(n)
            row["end_s"] = float(d["end_s"][sl][-1])
            for c in _SUMS:
                # a sequential sum carried on from the step's total so far, so that where a
                # buffer ends never changes the result (numpy's sum() is pairwise)
                part = d[c][sl]
                row[c] = np.cumsum(np.concatenate([np.asarray(row[c])[None], part]),
                                   axis=0)[-1]

    # -- completion --------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any]) -> Path:
        """Write the tables and root attributes, close, and rename to the final name."""
        self._flush()
        f = self.f
        assert f is not None, "TraceWriter.finish called twice"
        self._write_tables(f)
        hier_dict = hierarchy_to_dict(self.hier)
        f.attrs.update({
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "memwall_version": memwall_version(),
            "command_line": json.dumps(self.command_line),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "hierarchy": json.dumps(hier_dict),
            "workload": json.dumps(run_meta(summary, self.hier)),
            "summary": json.dumps(summary),
            "provenance": json.dumps(self.provenance),
            "runtime": json.dumps(runtime_to_dict(self.runtime) if self.runtime else None),
            "n_records": self.n,
        })
        f.close()
        self.f = None
        self.staged.commit()
        return self.path

    def _write_tables(self, f: h5py.File) -> None:
        lookup = f.create_group("lookup")
        for name, table in (("op_types", self.types), ("kinds", self.kinds),
                            ("phases", self.phases)):
            lookup.create_dataset(name, data=list(table), dtype=_STR)
        keys = list(self.op_index)
        ops = f.create_group("ops")
        ops.create_dataset("name", data=[k[0] for k in keys], dtype=_STR)
        ops.create_dataset("op_type", data=np.array([self.types[k[1]] for k in keys], np.int32))
        ops.create_dataset("kind", data=np.array([self.kinds[k[2]] for k in keys], np.int32))
        ops.create_dataset("layer", data=np.array([k[3] for k in keys], np.int32))
        for c, u in (("op_type", "index into /lookup/op_types"),
                     ("kind", "index into /lookup/kinds"), ("layer", "-1 outside the layers")):
            ops[c].attrs["units"] = u
        lv = f.create_group("levels")
        levels = self.hier.levels
        lv.create_dataset("name", data=[x.name for x in levels], dtype=_STR)
        for c, u in (("capacity_bytes", "bytes"), ("bandwidth_bytes_per_s", "bytes/s"),
                     ("efficiency", "fraction of peak bandwidth sustained"),
                     ("latency_s", "s"), ("sustained_bytes_per_s", "bytes/s")):
            lv.create_dataset(c, data=np.array([getattr(x, c) for x in levels], np.float64))
            lv[c].attrs["units"] = u
        steps = f.create_group("steps")
        ks = sorted(self.steps)
        for c, (dt, u) in STEP_COLUMNS.items():
            vals = ks if c == "step" else [self.steps[k][c] for k in ks]
            shape = (len(ks), self.n_levels) if c in PER_LEVEL else (len(ks),)
            arr = np.array(vals, dtype=dt).reshape(shape)
            ds = steps.create_dataset(c, data=arr, chunks=(max(1, min(4096, len(ks))),)
                                      + shape[1:], **_FILTERS)
            ds.attrs["units"] = u

    def abort(self) -> None:
        """Discard the partial file (a run that raised leaves nothing behind)."""
        if self.f is not None:
            try:
                self.f.close()
            finally:
                self.f = None
                self.staged.discard()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
