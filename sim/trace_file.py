"""HDF5 trace files (schema 2): the flat OpRecords of a run, streamed to disk, and read back.

Layout (every table is columnar: one 1-D dataset per column, or 2-D (rows, levels) for the
per-level columns; chunked, gzip with shuffle, fletcher32 checksums; `units` attribute on each).
The columns of /ops, /records and /steps, their dtypes and units come from the record schema,
sim.trace.FIELDS; /steps holds what sim.trace.Totals makes of each step's records:

    /                attrs: format="memwall-trace", schema_version, memwall_version,
                     command_line, created (ISO 8601, UTC), hierarchy, runtime, workload,
                     summary, provenance (JSON: what produced the run, as in the summary),
                     sample (JSON: the decode steps a sampled run ran and their weights,
                     sim/sampling.py; null when every step ran)
    /lookup/         op_types, kinds, phases: names stored once, referred to by index
    /levels/         name, capacity_bytes, bandwidth_bytes_per_s, efficiency, latency_s,
                     sustained_bytes_per_s (innermost first)
    /ops/            the static op table: name, op_type, kind (indices into /lookup), layer
    /records/        one row per op execution: step, op (index into /ops), phase, start_s,
                     end_s, dispatch_s, compute_s, interconnect_s, stall_s (n, levels),
                     bytes (n, levels), flops, mops_bytes, compute_start_s, prefetch_s,
                     hit_bytes (n, levels), lookup_bytes (n, levels)
    /steps/          one row per step (token): step, phase, first (row in /records), n_ops,
                     start_s, end_s and the record sums (dispatch_s, compute_s, ...)
    /energy/         only for a hierarchy with energy figures: j (n, parts), each record's
                     energy in J per part (attrs `parts`: compute, each level, interconnect,
                     static), charged by sim.energy as the records are written; rows as
                     /records. Not a record field: derived from them and the hierarchy.

Every dataset carries a `sha256` attribute of its values, and the root a `sha256` over the
other root attributes and those digests (sim/trace_digest.py); the reader checks them and
the tables' consistency (sim/trace_reader.py).

The file is written under a hidden temporary name and put in place only when complete
(sim/outfile.py); a run that raises removes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import energy, sampling, trace_digest
from .errors import MemwallError
from .hierarchy import Hierarchy
from .hierarchy_file import hierarchy_to_dict
from .outfile import Staged, memwall_version
from .runtime import Runtime
from .runtime_file import runtime_to_dict
from .summary import Summary
from .trace import FIELD, FIELDS, FIRST, LAST, SUM, WIDTH, OpRecord, Records, Totals

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

FORMAT = "memwall-trace"
SCHEMA_VERSION = 2  # 2: prefetch_s, hit_bytes, lookup_bytes
CHUNK_ROWS = 65536  # records buffered in memory and written per HDF5 chunk
BLOCK_ROWS = 4096  # records buffered (sim.trace.Records) before they become columns
_FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True,
                            "fletcher32": True}
_STR = h5py.string_dtype()

# The tables, from the schema (sim.trace.FIELDS): column -> (dtype, units)
RECORD_COLUMNS: dict[str, tuple[str, str]] = {
    f.name: (f.dtype, f.units) for f in FIELDS if f.table == "records"}
STEP_COLUMNS: dict[str, tuple[str, str]] = {
    "step": (FIELD["step"].dtype, "step"),
    "phase": (FIELD["phase"].dtype, FIELD["phase"].units),
    "first": ("int64", "first row in /records"),
    "n_ops": ("int64", "op executions"),
    **{f.name: (f.dtype, f.units) for f in FIELDS if f.reduce in (SUM, FIRST, LAST)},
}
PER_LEVEL = tuple(f.name for f in FIELDS if f.per_level)
OP_KEY = ("op", *(f.name for f in FIELDS if f.table == "ops"))  # a row of /ops
_STEP_TOTALS = {"step": "keys", "phase": "phase", "first": "first_row", "n_ops": "n"}


SLACK_BYTES = 1 << 20  # room kept for HDF5's metadata beyond the data, checked before writes
_UNFREED: list[Any] = []  # the h5py objects of failed writes (see TraceWriter._failed)


class TraceWriteError(MemwallError):
    """The trace could not be written (a full disk, a file-size limit); nothing is left."""


def room_bytes(path: Path, size: int) -> float:
    """Bytes a file of `size` bytes at `path` may still grow by: the free space of its file
    system, and the process's file-size limit (RLIMIT_FSIZE)."""
    st = os.statvfs(path.parent)
    room = float(st.f_bavail * st.f_frsize)
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            room = min(room, soft - size)
    return room


def _reason(err: BaseException) -> str:
    """The system's words for an HDF5 write failure ("File too large"), else its first line."""
    found = re.search(r"error message = '([^']*)'", str(err))
    if found:
        return found.group(1)
    text = getattr(err, "strerror", None) or str(err)
    return text.splitlines()[0] if text else type(err).__name__


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
                 chunk_rows: int = CHUNK_ROWS, runtime: Runtime | None = None,
                 sample: sampling.Plan | None = None,
                 tariff: energy.Tariff | None = None) -> None:
        """`tariff`: the run's energy prices (sim.energy.tariff); with one, /energy holds
        each record's energy."""
        self.path = Path(path)
        self.tariff = tariff
        self.hier = hier
        self.runtime = runtime
        self.sample = sample
        self.command_line = list(command_line)
        self.provenance = provenance or {}
        self.chunk_rows = chunk_rows
        self.n_levels = len(hier.levels)
        self.staged = Staged(path)
        self.tmp = self.staged.tmp
        if room_bytes(self.tmp, 0) < 2 * SLACK_BYTES:
            self.staged.discard()
            raise TraceWriteError(f"--trace {self.staged.given}: no room to write a trace "
                                  f"(under {2 * SLACK_BYTES >> 20} MiB free or allowed); "
                                  "nothing was written")
        # no chunk cache: whole chunks are written once, and a cache grew with the run (llama2-7b
        # unfused, 500 -> 2,000 tokens: 81 -> 142 MiB over an untraced run; without: 34 -> 35)
        self.f: h5py.File | None = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        self.op_index: dict[tuple, int] = {}  # OP_KEY values -> row in /ops
        # the names each str field's index points into: dataset -> name -> index
        self.names: dict[str, dict[str, int]] = {f.lookup: {} for f in FIELDS
                                                 if f.lookup.startswith("lookup/")}
        self.n = 0  # records written
        self.steps = Totals(self.n_levels, keep=("phase",))  # per step, for /steps
        self._pending = Records()  # records not yet in _buf
        self._values = self._pending.values
        self._buf: dict[str, list[np.ndarray]] = {c: [] for c in RECORD_COLUMNS}
        self._buffered = 0  # records in _buf
        self._room = min(BLOCK_ROWS, chunk_rows) * WIDTH  # values _pending takes
        self._digests = {c: trace_digest.Digest() for c in RECORD_COLUMNS}
        group = self.f.create_group("records")
        self.records = {c: self._column(group, c, dt, u, chunk_rows)
                        for c, (dt, u) in RECORD_COLUMNS.items()}
        self._energy: list[np.ndarray] = []
        if tariff is not None:
            g = self.f.create_group("energy")
            names = energy.parts(tariff.levels)
            self._energy_ds = g.create_dataset(
                "j", shape=(0, len(names)), maxshape=(None, len(names)), dtype="float64",
                chunks=(chunk_rows, len(names)), **_FILTERS)
            self._energy_ds.attrs["units"] = "J, per part (attrs parts), per record"
            self._energy_ds.attrs["parts"] = json.dumps(list(names))

    def _column(self, group: h5py.Group, name: str, dtype: Any, units: str,
                chunk: int) -> h5py.Dataset:
        wide = name in PER_LEVEL
        shape = (0, self.n_levels) if wide else (0,)
        ds = group.create_dataset(name, shape=shape, maxshape=(None,) + shape[1:], dtype=dtype,
                                  chunks=(chunk,) + shape[1:], **_FILTERS)
        ds.attrs["units"] = units
        return ds

    # -- streaming ---------------------------------------------------------------------------
    def add(self, r: OpRecord) -> None:
        values = self._values
        values.extend(r)  # Records.add, inline
        if len(values) >= self._room:
            self._convert()

    def _convert(self) -> None:
        """Turn the pending records into stored columns (str fields as indices), fold them into
        the per-step totals, and write a chunk once one is full."""
        n = len(self._pending)
        if n == 0:
            return
        cols = self._pending.columns()
        if self.tariff is not None:
            by = energy.charge(self.tariff, cols)
            self._energy.append(np.stack(list(by.values()), axis=1))
        index = self.op_index
        n_known = len(index)
        keys = zip(*(cols[c] if FIELD[c].lookup else cols[c].tolist() for c in OP_KEY),
                   strict=True)
        op = [index.setdefault(k, len(index)) for k in keys]
        if len(index) > n_known:  # new ops: their names, in order of first use
            new = list(index)[n_known:]
            for f in FIELDS:
                if f.table == "ops" and f.lookup:
                    names, j = self.names[f.lookup], OP_KEY.index(f.name)
                    for k in new:
                        names.setdefault(k[j], len(names))
        stored = {"op": np.array(op, dtype=np.int64)}
        for f in FIELDS:
            if f.table == "records" and f.lookup.startswith("lookup/"):
                names = self.names[f.lookup]
                stored[f.name] = np.array([names.setdefault(v, len(names)) for v in cols[f.name]],
                                          dtype=np.int64)
        cols.update(stored)
        self.steps.add(cols["step"], cols)
        for c in RECORD_COLUMNS:
            self._buf[c].append(cols[c])
        self._buffered += n
        if self._buffered >= self.chunk_rows:
            self._flush()
        self._room = min(BLOCK_ROWS, self.chunk_rows - self._buffered) * WIDTH

    def _flush(self) -> None:
        rows = self._buffered
        if rows == 0:
            return
        end = self.n + rows
        more = sum(a.nbytes for a in self._energy)
        self._make_room(sum(a.nbytes for c in self._buf for a in self._buf[c]) + more)
        try:
            for c, ds in self.records.items():
                ds.resize(end, axis=0)
                block = np.concatenate(self._buf[c]).astype(RECORD_COLUMNS[c][0])
                ds[self.n:end] = block
                self._digests[c].update(block)
                self._buf[c] = []
            if self._energy:
                self._energy_ds.resize(end, axis=0)
                self._energy_ds[self.n:end] = np.concatenate(self._energy)
                self._energy = []
        except (OSError, RuntimeError, ValueError) as err:
            raise self._failed(err) from None
        self.n = end
        self._buffered = 0

    def _make_room(self, data_bytes: int) -> None:
        """Refuse, before HDF5 tries, a write that the disk or the file-size limit cannot
        take: HDF5 cannot recover from a failed write (it crashes freeing the file)."""
        assert self.f is not None
        need = 1.1 * data_bytes + SLACK_BYTES  # gzip of incompressible data grows a little
        room = room_bytes(self.tmp, self.f.id.get_filesize())
        if need > room:
            f, self.f, self.records = self.f, None, {}
            f.close()  # within the slack kept
            self.staged.discard()
            reason = "File too large" if room < self._free() else "No space left on device"
            raise TraceWriteError(f"--trace {self.staged.given}: cannot write the trace: "
                                  f"{reason} ({need / 2**20:,.1f} MiB more needed, "
                                  f"{max(room, 0) / 2**20:,.1f} MiB left); nothing was written")

    def _free(self) -> float:
        st = os.statvfs(self.tmp.parent)
        return float(st.f_bavail * st.f_frsize)

    def _failed(self, err: BaseException) -> TraceWriteError:
        """Drop the half-written file and say why. HDF5 crashes (SIGSEGV) freeing the objects
        of a file whose write failed, so they are kept, unfreed, until the process ends."""
        _UNFREED.append((self.f, self.records))
        self.f, self.records = None, {}
        self.staged.discard()
        return TraceWriteError(f"--trace {self.staged.given}: cannot write the trace: "
                               f"{_reason(err)}; nothing was written")

    # -- completion --------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any],
               tables: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, str]]]
               | None = None) -> Path:
        """Write the tables and root attributes, close, and rename to the final name.
        `tables`: more groups to write, name -> (column -> 1-D array, column -> units), as a
        serving run's /requests and /iterations."""
        self._convert()
        self._flush()
        f = self.f
        assert f is not None, "TraceWriter.finish called twice"
        attrs = len(json.dumps(summary)) + len(json.dumps(self.provenance)) + 65536
        steps = len(self.steps.keys) * 8 * len(STEP_COLUMNS) * max(1, self.n_levels)
        self._make_room(attrs + steps + 64 * len(self.op_index))
        try:
            self._finish(f, summary, tables)
        except (OSError, RuntimeError, ValueError) as err:
            raise self._failed(err) from None
        self.f = None
        self.staged.commit()
        return self.path

    def _finish(self, f: h5py.File, summary: dict[str, Any],
                tables: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, str]]]
                | None) -> None:
        self._write_tables(f)
        for group, (columns, units) in (tables or {}).items():
            g = f.create_group(group)
            for c, values in columns.items():
                arr = np.asarray(values)
                ds = g.create_dataset(c, data=arr, chunks=(max(1, min(4096, len(arr))),),
                                      **_FILTERS)
                ds.attrs["units"] = units.get(c, "")
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
            "sample": json.dumps(None if self.sample is None else sampling.to_dict(self.sample)),
            "runtime": json.dumps(runtime_to_dict(self.runtime) if self.runtime else None),
            "n_records": self.n,
        })
        self._write_digests(f)
        f.close()

    def _write_digests(self, f: h5py.File) -> None:
        """Each dataset's sha256 (the records' digested as they streamed, the small tables
        read back), then the root's over the attributes and those (sim.trace_digest)."""
        digests: dict[str, str] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                group, _, column = name.partition("/")
                if group == "records":
                    digests[name] = self._digests[column].hexdigest()
                else:
                    digests[name] = trace_digest.of(
                        obj.asstr()[()] if obj.dtype.kind == "O" else obj[()])
                obj.attrs[trace_digest.ATTR] = digests[name]

        f.visititems(visit)
        f.attrs[trace_digest.ATTR] = trace_digest.root(dict(f.attrs), digests)

    def _write_tables(self, f: h5py.File) -> None:
        lookup = f.create_group("lookup")
        for name, table in self.names.items():
            lookup.create_dataset(name.removeprefix("lookup/"), data=list(table), dtype=_STR)
        keys = list(self.op_index)
        ops = f.create_group("ops")
        ops.create_dataset("name", data=[k[0] for k in keys], dtype=_STR)
        for j, c in enumerate(OP_KEY[1:], start=1):
            fld = FIELD[c]
            names = self.names.get(fld.lookup)
            vals = [k[j] for k in keys] if names is None else [names[k[j]] for k in keys]
            ops.create_dataset(c, data=np.array(vals, fld.dtype))
            ops[c].attrs["units"] = fld.units
        lv = f.create_group("levels")
        levels = self.hier.levels
        lv.create_dataset("name", data=[x.name for x in levels], dtype=_STR)
        for c, u in (("capacity_bytes", "bytes"), ("bandwidth_bytes_per_s", "bytes/s"),
                     ("efficiency", "fraction of peak bandwidth sustained"),
                     ("latency_s", "s"), ("sustained_bytes_per_s", "bytes/s")):
            lv.create_dataset(c, data=np.array([getattr(x, c) for x in levels], np.float64))
            lv[c].attrs["units"] = u
        steps = f.create_group("steps")
        tot = self.steps
        order = np.argsort(tot.keys, kind="stable")
        for c, (dt, u) in STEP_COLUMNS.items():
            got = _STEP_TOTALS.get(c, c)
            arr = np.asarray(tot.keys if got == "keys" else tot[got])[order].astype(dt)
            ds = steps.create_dataset(c, data=arr, chunks=(max(1, min(4096, len(order))),)
                                      + arr.shape[1:], **_FILTERS)
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
