"""Reading HDF5 traces back (see sim.trace_file for the layout): columns as numpy arrays.

    from sim import read_trace
    t = read_trace("run.h5", tokens=(1, 64))  # steps 1..63 only; None for all
    import pandas as pd                       # not a memwall dependency
    ops = pd.DataFrame(t.table())             # one row per op execution, one column per field
    steps = pd.DataFrame(t.step_table())      # one row per step (token)

Any file that is not a whole memwall trace of a known schema raises TraceFileError (a
MemwallError) with one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from . import sampling, trace_digest
from .errors import MemwallError
from .hierarchy import Compute, Energy, Hierarchy, Interconnect, Level, LevelEnergy, Placement
from .runtime import Runtime
from .runtime_file import runtime_from_dict
from .trace import FIELDS, FIRST, LAST, SUM, OpRecord, Totals
from .trace_file import FORMAT, PER_LEVEL, RECORD_COLUMNS, SCHEMA_VERSION, STEP_COLUMNS

READ_ROWS = 262144  # records per read when streaming OpRecords back
# the /records columns that Totals reduces, and the op they belong to
REDUCED = ("op", *(f.name for f in FIELDS if f.reduce in (SUM, FIRST, LAST)))
Tokens = tuple[int | None, int | None] | None  # half-open step range [a, b)


class TraceFileError(MemwallError):
    """A file that is not a readable memwall trace; the message is one line naming it."""


@dataclass(frozen=True)
class Trace:
    path: str
    attrs: dict[str, Any]  # schema_version, memwall_version, command_line (list), created
    hierarchy: Hierarchy  # rebuilt from the stored dict
    runtime: Runtime | None  # the software stack it ran (None in traces from before runtimes)
    sample: sampling.Plan | None  # the decode steps a sampled run ran (None: every step)
    meta: dict[str, Any]  # the run's inputs: workload, batch, lengths, precision, tp, ...
    summary: dict[str, Any]  # the JSON summary the run printed
    level_names: list[str]  # innermost first
    levels: dict[str, np.ndarray]  # /levels columns
    ops: dict[str, np.ndarray]  # static op table: name, op_type, kind (str), layer (int)
    records: dict[str, np.ndarray]  # /records columns for the rows read; per-level are (n, L)
    steps: dict[str, np.ndarray]  # /steps columns for the steps read
    rows: tuple[int, int]  # the half-open row range of /records that `records` holds
    lookups: dict[str, list[str]] = field(default_factory=dict)  # "lookup/phases" -> names

    def table(self) -> dict[str, np.ndarray]:
        """One flat column per field (per-level columns split as 'stall_s.hbm', 'bytes.hbm'),
        with op_name, op_type, kind and layer joined from the op table: pd.DataFrame-ready."""
        r, ops = self.records, self.ops
        out: dict[str, np.ndarray] = {"step": r["step"], "op": r["op"]}
        for c in ("name", "op_type", "kind", "layer"):
            out["op_name" if c == "name" else c] = ops[c][r["op"]]
        out.update(_flat(r, self.level_names, skip=("step", "op")))
        return out

    def step_table(self) -> dict[str, np.ndarray]:
        """Per-step totals, flat columns as in `table`."""
        return _flat(self.steps, self.level_names)

    def op_records(self) -> Iterator[OpRecord]:
        """The records read, as the OpRecords the engine produced."""
        yield from _as_records(decoded(self.records, self))

    def steps_rows(self) -> tuple[int, int]:
        """The half-open /records row range of the steps in `steps`."""
        first, n = self.steps["first"], self.steps["n_ops"]
        return (int(first[0]), int(first[-1] + n[-1])) if len(first) else (0, 0)

    @property
    def phases(self) -> list[str]:
        return list(self.attrs["phases"])


def _flat(cols: dict[str, np.ndarray], names: list[str],
          skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c, v in cols.items():
        if c in skip:
            continue
        if c in PER_LEVEL:
            for i, n in enumerate(names):
                out[f"{c}.{n}"] = v[:, i]
        else:
            out[c] = v
    return out


def decoded(stored: dict[str, np.ndarray], trace: Trace) -> dict[str, Any]:
    """Stored /records columns as the schema's columns (sim.trace.columns): an op's attributes
    joined from the op table, and str fields as object arrays of str."""
    op = stored["op"]
    out: dict[str, Any] = {}
    for f in FIELDS:
        if f.table == "ops":
            out[f.name] = trace.ops[f.name][op]
        elif f.name == "op":
            out[f.name] = trace.ops["name"][op]
        elif f.lookup:
            out[f.name] = np.array(trace.lookups[f.lookup], dtype=object)[stored[f.name]]
        else:
            out[f.name] = stored[f.name]
    return out


def _as_records(cols: dict[str, Any]) -> Iterator[OpRecord]:
    values = [list(map(tuple, cols[f.name].tolist())) if f.per_level else cols[f.name].tolist()
              for f in FIELDS]
    new = tuple.__new__  # an OpRecord without NamedTuple's Python-level __new__
    for v in zip(*values, strict=True):
        yield new(OpRecord, v)


@contextmanager
def _reading(path: str) -> Iterator[h5py.File]:
    """Open a trace, turning every failure to read it into one TraceFileError line."""
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file") from None
    except (OSError, RuntimeError) as e:
        raise TraceFileError(f"{path}: not a readable HDF5 file (truncated or not HDF5): "
                             f"{_short(e)}") from None
    try:
        with f:
            _check(f, path)
            yield f
    except TraceFileError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError,
            UnicodeError) as e:  # h5py raises RuntimeError on a damaged B-tree or address
        raise TraceFileError(f"{path}: damaged memwall trace: {_short(e)}") from None


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _check(f: h5py.File, path: str) -> None:
    if f.attrs.get("format") != FORMAT:
        raise TraceFileError(f"{path}: not a memwall trace (no format={FORMAT!r} attribute)")
    version = f.attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        shown = version.item() if isinstance(version, np.generic) else version
        raise TraceFileError(f"{path}: unknown trace schema version {shown!r}; this memwall "
                             f"reads version {SCHEMA_VERSION}")
    for group, columns in (("records", RECORD_COLUMNS), ("steps", STEP_COLUMNS)):
        for c in columns:
            if f"{group}/{c}" not in f:
                raise TraceFileError(f"{path}: damaged memwall trace: /{group}/{c} missing")
    n = f.attrs.get("n_records", -1)
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise TraceFileError(f"{path}: damaged memwall trace: n_records = {_shown(n)}; "
                             "expected a whole number")
    n = int(n)
    if any(f[f"records/{c}"].shape[0] != n for c in RECORD_COLUMNS):
        raise TraceFileError(f"{path}: damaged memwall trace: /records columns are not all "
                             f"{n} rows long")
    for key, kinds in _ATTR_TYPES.items():
        value = f.attrs.get(key)
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            parsed = value
        if not isinstance(value, str) or not isinstance(parsed, kinds):
            wanted = " or ".join("null" if k is type(None) else _JSON_NAMES[k] for k in kinds)
            raise TraceFileError(f"{path}: damaged memwall trace: attribute {key!r} = "
                                 f"{_shown(value)}; expected JSON text of {wanted}")
    _check_digests(f, path)
    _check_tables(f, path, n)


_JSON_NAMES = {dict: "an object", list: "a list"}
_ATTR_TYPES: dict[str, tuple[type, ...]] = {  # root attribute -> the JSON it holds
    "hierarchy": (dict,), "workload": (dict,), "summary": (dict,), "provenance": (dict,),
    "command_line": (list,), "sample": (dict, type(None)), "runtime": (dict, type(None))}


def _shown(v: Any) -> str:
    text = repr(v.item() if isinstance(v, np.generic) else v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_digests(f: h5py.File, path: str) -> None:
    """The sha256 of every small table and of the root attributes (sim.trace_digest); the
    /records columns are checked when read whole (`check_record_digests`), and every chunk
    by HDF5's fletcher32. A trace without digests (written before them) is not checked."""
    if trace_digest.ATTR not in f.attrs:
        return
    digests: dict[str, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            stored = obj.attrs.get(trace_digest.ATTR)
            if not isinstance(stored, str):
                raise TraceFileError(f"{path}: damaged memwall trace: /{name} has no sha256")
            digests[name] = stored
            if not name.startswith("records/"):
                got = trace_digest.of(obj.asstr()[()] if obj.dtype.kind == "O" else obj[()])
                if got != stored:
                    raise TraceFileError(f"{path}: damaged memwall trace: /{name} fails its "
                                         "sha256 checksum")

    f.visititems(visit)
    if trace_digest.root(dict(f.attrs), digests) != f.attrs[trace_digest.ATTR]:
        raise TraceFileError(f"{path}: damaged memwall trace: the root attributes (summary, "
                             "hierarchy, ...) fail their sha256 checksum")


def check_record_digests(f: h5py.File, path: str, cols: dict[str, np.ndarray]) -> None:
    """The sha256 of whole /records columns just read."""
    for c, v in cols.items():
        stored = f[f"records/{c}"].attrs.get(trace_digest.ATTR)
        if stored is not None and trace_digest.of(v) != stored:
            raise TraceFileError(f"{path}: damaged memwall trace: /records/{c} fails its "
                                 "sha256 checksum")


class RecordDigests:
    """The sha256 of /records columns read in chunks from row 0 to the end (a read of part
    of the records checks nothing here): `add` each chunk, then `check`."""

    def __init__(self, f: h5py.File, path: str, rows: tuple[int, int]) -> None:
        self.f, self.path = f, path
        self.on = rows == (0, int(f.attrs["n_records"]))
        self.digests: dict[str, trace_digest.Digest] = {}

    def add(self, cols: dict[str, np.ndarray]) -> None:
        if self.on:
            for c, v in cols.items():
                self.digests.setdefault(c, trace_digest.Digest()).update(v)

    def check(self) -> None:
        for c, h in self.digests.items() if self.on else ():
            stored = self.f[f"records/{c}"].attrs.get(trace_digest.ATTR)
            if stored is not None and h.hexdigest() != stored:
                raise TraceFileError(f"{self.path}: damaged memwall trace: /records/{c} fails "
                                     "its sha256 checksum")


def _check_tables(f: h5py.File, path: str, n: int) -> None:
    """Indices within their tables, finite times, steps that tile the records."""
    sizes = {k: len(ds) for k, ds in f["lookup"].items()}
    for fld in FIELDS:
        if fld.table == "ops" and fld.lookup:
            _in_range(f[f"ops/{fld.name}"][()], sizes[fld.lookup.removeprefix("lookup/")],
                      f"/ops/{fld.name}", path)
    st = {c: f[f"steps/{c}"][()] for c in STEP_COLUMNS}
    _in_range(st["phase"], sizes["phases"], "/steps/phase", path)
    for c, v in st.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise TraceFileError(f"{path}: damaged memwall trace: /steps/{c} holds a value "
                                 "that is not finite")
    first, count = st["first"], st["n_ops"]
    if len(first) and ((first < 0).any() or (count < 0).any() or (first + count > n).any()
                       or int(count.sum()) != n):
        raise TraceFileError(f"{path}: damaged memwall trace: /steps/first and /steps/n_ops "
                             f"do not tile the {n} records")


def _in_range(values: np.ndarray, size: int, name: str, path: str) -> None:
    if len(values) and (values.min() < 0 or values.max() >= size):
        bad = values[(values < 0) | (values >= size)][0]
        raise TraceFileError(f"{path}: damaged memwall trace: {name} holds {int(bad)}; "
                             f"expected an index in 0..{size - 1}")


def check_records(cols: dict[str, np.ndarray], n_ops: int, n_phases: int, path: str) -> None:
    """Record columns just read: op and phase indices in range, every time finite."""
    if "op" in cols:
        _in_range(cols["op"], n_ops, "/records/op", path)
    if "phase" in cols:
        _in_range(cols["phase"], n_phases, "/records/phase", path)
    for c, v in cols.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise TraceFileError(f"{path}: damaged memwall trace: /records/{c} holds a value "
                                 "that is not finite")


def _strings(ds: h5py.Dataset) -> np.ndarray:
    return np.array(ds.asstr()[()], dtype=object)


def step_rows(steps: np.ndarray, first: np.ndarray, n_ops: np.ndarray,
              tokens: Tokens) -> tuple[np.ndarray, tuple[int, int]]:
    """Which steps fall in the half-open range `tokens`, and the /records rows they span."""
    a, b = tokens if tokens is not None else (None, None)
    keep = np.ones(len(steps), dtype=bool)
    if a is not None:
        keep &= steps >= a
    if b is not None:
        keep &= steps < b
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return idx, (0, 0)
    return idx, (int(first[idx[0]]), int(first[idx[-1]] + n_ops[idx[-1]]))


def read_trace(path: str | os.PathLike[str], tokens: Tokens = None,
               records: bool = True) -> Trace:
    """Load a trace: metadata, levels, op table, per-step table and (records=True) the op
    records of the steps in the half-open range `tokens` = (first, end) (None: all)."""
    p = os.fspath(path)
    with _reading(p) as f:
        a = f.attrs
        hier_dict = json.loads(a["hierarchy"])
        lookups = {f"lookup/{k}": _strings(ds).tolist() for k, ds in f["lookup"].items()}
        ops = {"name": _strings(f["ops/name"])}
        for fld in FIELDS:
            if fld.table == "ops":
                stored = f[f"ops/{fld.name}"][()]
                ops[fld.name] = (np.array(lookups[fld.lookup], dtype=object)[stored]
                                 if fld.lookup else stored)
        levels = {c: (_strings(ds) if c == "name" else ds[()]) for c, ds in f["levels"].items()}
        all_steps = {c: f[f"steps/{c}"][()] for c in STEP_COLUMNS}
        idx, rows = step_rows(all_steps["step"], all_steps["first"], all_steps["n_ops"], tokens)
        steps = {c: v[idx] for c, v in all_steps.items()}
        recs: dict[str, np.ndarray] = {}
        if records:
            recs = {c: f[f"records/{c}"][rows[0]:rows[1]] for c in RECORD_COLUMNS}
            check_records(recs, len(ops["name"]), len(lookups["lookup/phases"]), p)
            if rows == (0, int(a["n_records"])):
                check_record_digests(f, p, recs)
        else:
            rows = (rows[0], rows[0])
        return Trace(
            path=p,
            attrs={"schema_version": int(a["schema_version"]),
                   "memwall_version": str(a["memwall_version"]),
                   "command_line": json.loads(a["command_line"]),
                   "created": str(a["created"]), "phases": lookups["lookup/phases"]},
            hierarchy=hierarchy_from_dict(hier_dict),
            runtime=_runtime(a),
            sample=_sample(a),
            meta=json.loads(a["workload"]),
            summary=json.loads(a["summary"]),
            level_names=[lv["name"] for lv in hier_dict["levels"]],
            levels=levels, ops=ops, records=recs, steps=steps, rows=rows, lookups=lookups,
        )


def iter_records(trace: Trace, rows: tuple[int, int] | None = None,
                 read_rows: int = READ_ROWS) -> Iterator[OpRecord]:
    """Stream OpRecords for `rows` of /records from disk in bounded chunks."""
    lo, hi = rows if rows is not None else trace.rows
    with _reading(trace.path) as f:
        cols = {c: f[f"records/{c}"] for c in RECORD_COLUMNS}
        for i in range(lo, hi, read_rows):
            j = min(hi, i + read_rows)
            d = {c: ds[i:j] for c, ds in cols.items()}
            check_records(d, len(trace.ops["name"]), len(trace.attrs["phases"]), trace.path)
            yield from _as_records(decoded(d, trace))


_COMPUTE_FIELDS = {f.name for f in dataclasses.fields(Compute)}  # a schema-1 hierarchy also
#                                  stored software figures, now the runtime's


def _sample(attrs: Any) -> sampling.Plan | None:
    text = attrs.get("sample")
    d = json.loads(text) if text is not None else None
    return sampling.from_dict(d) if d else None


def _runtime(attrs: Any) -> Runtime | None:
    text = attrs.get("runtime")
    d = json.loads(text) if text is not None else None
    return runtime_from_dict(d) if d else None


def hierarchy_from_dict(d: dict[str, Any]) -> Hierarchy:
    """The inverse of sim.hierarchy_to_dict (the raw source document is not kept)."""
    ic = d.get("interconnect")
    pl = d["placement"]
    return Hierarchy(
        name=d["name"],
        compute=Compute(**{k: v for k, v in d["compute"].items() if k in _COMPUTE_FIELDS}),
        levels=tuple(Level(**lv) for lv in d["levels"]),
        placement=Placement(**{k: tuple(v) for k, v in pl.items()}),
        interconnect=Interconnect(**ic) if ic else None,
        description=d.get("description", ""),
        runtime=d.get("runtime", ""),
        energy=_energy(d.get("energy")),
        schema_version=d.get("schema_version", 1),
        path=d.get("path", ""),
    )


def _energy(d: dict[str, Any] | None) -> Energy | None:
    if not d:
        return None
    return Energy(**{**d, "levels": {k: LevelEnergy(**v) for k, v in d["levels"].items()}})


def op_totals(trace: Trace, read_rows: int = READ_ROWS) -> dict[str, np.ndarray]:
    """Totals per row of the op table over the rows of `trace` (read from disk in bounded
    chunks, through sim.trace.Totals): calls, and every sum of the schema and its derived
    quantities: elapsed_s, compute_s, flops, mops_bytes, stall_s (ops, L), bytes (ops, L), ...
    An op with no execution in the rows has zeros."""
    n_ops, L = len(trace.ops["name"]), len(trace.level_names)
    tot = Totals(L)
    lo, hi = trace.steps_rows()
    with _reading(trace.path) as f:
        cols = {c: f[f"records/{c}"] for c in REDUCED}
        for i in range(lo, hi, read_rows):
            j = min(hi, i + read_rows)
            d = {c: ds[i:j] for c, ds in cols.items()}
            check_records(d, n_ops, len(trace.attrs["phases"]), trace.path)
            tot.add(d["op"], d)
    out: dict[str, np.ndarray] = {}
    for name in tot.sums:
        got = tot[name]
        full = np.zeros((n_ops, *got.shape[1:]), got.dtype)
        full[tot.keys] = got
        out["calls" if name == "n" else name] = full
    return out
