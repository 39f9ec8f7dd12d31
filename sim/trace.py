"""Flat trace records, one per op execution; their one schema; the one reducer over them.

FIELDS is the schema of OpRecord, field by field and in its order: how the trace file stores
the field (sim.trace_file), whether it is per level (a tuple in the record, a (rows, levels)
column, innermost first) and how a span of records (a step, a layer, an op, a run) reduces it:

    key    what records are grouped by (a step, a phase, an op and its attributes); not summed
    sum    summed, one record at a time in record order
    first  the value of the span's first record
    last   the value of its last record
    none   kept per record only

DERIVED are the quantities every record implies (elapsed, and the part of it not computing),
summed like the `sum` fields. Totals reduces record columns by this table; the summary, the
trace file's /steps table, op_totals and the inspection breakdowns all go through it. A new
field is a line in FIELDS, the same field in OpRecord (tests/test_trace.py checks that they
agree) and the engines that fill it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import starmap
from struct import Struct
from typing import Any, NamedTuple

import numpy as np

KEY, SUM, FIRST, LAST, NONE = "key", "sum", "first", "last", "none"


class Field(NamedTuple):
    name: str
    dtype: str  # numpy dtype of its column in the trace file; a str field's is its index's
    units: str  # the column's `units` attribute
    reduce: str  # KEY | SUM | FIRST | LAST | NONE
    per_level: bool = False  # one value per memory level, innermost first
    table: str = "records"  # "ops": an attribute of the op, stored once per op in /ops
    lookup: str = ""  # a str field: where the names its stored index points into are kept
    # ("lookup/<names>", a table of names; "ops/name", the op table, the op's own row)


FIELDS: tuple[Field, ...] = (
    Field("step", "int32", "step (0 = prefill or encoder pass, k = decode step k)", KEY),
    Field("phase", "uint8", "index into /lookup/phases", KEY, lookup="lookup/phases"),
    Field("op", "int32", "index into /ops", KEY, lookup="ops/name"),
    Field("op_type", "int32", "index into /lookup/op_types", KEY, table="ops",
          lookup="lookup/op_types"),
    Field("kind", "int32", "index into /lookup/kinds", KEY, table="ops", lookup="lookup/kinds"),
    Field("layer", "int32", "-1 outside the layers", KEY, table="ops"),
    Field("start_s", "float64", "s", FIRST),
    Field("end_s", "float64", "s", LAST),
    Field("dispatch_s", "float64", "s", SUM),
    Field("compute_s", "float64", "s", SUM),
    Field("interconnect_s", "float64", "s", SUM),
    Field("stall_s", "float64", "s, per level (innermost first)", SUM, per_level=True),
    Field("bytes", "int64", "bytes, per level (innermost first)", SUM, per_level=True),
    Field("flops", "int64", "FLOP", SUM),
    Field("mops_bytes", "int64", "bytes read and written at the op boundary", SUM),
    Field("compute_start_s", "float64", "s, when the compute units began the op", NONE),
    Field("prefetch_s", "float64", "s, its weights in flight before the op began (prefetch)",
          SUM),
    Field("hit_bytes", "int64", "bytes read that the cache at each level served", SUM,
          per_level=True),
    Field("lookup_bytes", "int64", "bytes read through the cache at each level (hits and "
          "misses)", SUM, per_level=True),
)
FIELD = {f.name: f for f in FIELDS}
# What every record implies, computed from its fields (derive) and summed like them
DERIVED: tuple[Field, ...] = (
    Field("elapsed_s", "float64", "s, end_s - start_s", SUM),
    Field("wait_s", "float64", "s, elapsed_s - compute_s: stalled, on anything", SUM),
)
SUMMED = {f.name: f for f in (*FIELDS, *DERIVED) if f.reduce == SUM}  # what Totals can sum
WIDTH = len(FIELDS)


class OpRecord(NamedTuple):
    """One op execution; its fields are FIELDS, in order."""

    step: int  # 0 = prefill or encoder pass, k = decode step k
    phase: str  # "encode" | "prefill" | "decode"
    op: str  # node name in the op graph, e.g. "h3.attn.qkv"
    op_type: str  # "qkv", "softmax", ...
    kind: str  # "matmul" | "vector" | "collective"
    layer: int  # -1 outside the layer stack
    start_s: float
    end_s: float
    dispatch_s: float  # stalled on kernel dispatch
    compute_s: float  # compute units busy
    interconnect_s: float  # stalled on the interconnect
    stall_s: tuple[float, ...]  # stalled on each memory level, innermost first
    bytes: tuple[int, ...]  # bytes that crossed each level for this op, innermost first
    flops: int
    mops_bytes: int  # bytes read and written at the op boundary (the paper's MOPs)
    compute_start_s: float  # when the compute units began this op (after dispatch and waits)
    prefetch_s: float  # how long before start_s its weights were requested (0: not prefetched)
    hit_bytes: tuple[int, ...]  # bytes of its reads the cache at each level served
    lookup_bytes: tuple[int, ...]  # bytes of its reads that looked up each level's cache

    @property
    def elapsed_s(self) -> float:
        return self.end_s - self.start_s


class Records:
    """OpRecords buffered flat, their fields one after another in one list, until they are
    turned into columns. Records are held by the thousand between folds: kept as records
    (tuple subclasses, which the garbage collector never stops tracking) each collection
    would scan them all; a flat list of numbers and str is one object to scan.

    >>> r = OpRecord(0, "prefill", "wte", "embed", "vector", -1, 0.0, 2.0, 0.5, 1.0, 0.0,
    ...              (0.25, 0.25), (64, 32), 0, 96, 0.5, 0.0, (0, 0), (0, 0))
    >>> b = Records()
    >>> b.add(r); b.add(r._replace(start_s=2.0, end_s=3.0)); len(b)
    2
    >>> c = b.columns()
    >>> c["op"], c["elapsed_s"].tolist(), c["bytes"].shape, len(b)
    (['wte', 'wte'], [2.0, 1.0], (2, 2), 0)
    """

    __slots__ = ("values",)

    def __init__(self) -> None:
        # record j's field i at j * WIDTH + i; one list for the life of the buffer, so a hot
        # loop may hold on to it and call values.extend(record) itself
        self.values: list[Any] = []

    def add(self, r: OpRecord) -> None:
        self.values.extend(r)

    def __len__(self) -> int:
        return len(self.values) // WIDTH

    def columns(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The records as one column per field (`names`, default all) and the DERIVED
        columns: numbers as float64 or int64 arrays ((rows, levels) per level), str fields
        as lists. Empties the buffer."""
        values = self.values
        n = len(values) // WIDTH
        out: dict[str, Any] = {}
        if n == 0:
            return out
        for i, f in enumerate(FIELDS):
            if names is not None and f.name not in names:
                continue
            col = values[i::WIDTH]
            if f.lookup:
                out[f.name] = col
                continue
            code, dtype = ("d", np.float64) if f.dtype == "float64" else ("q", np.int64)
            if f.per_level:  # struct packs Python numbers into C storage the fastest
                levels = len(col[0])
                packed = b"".join(starmap(_struct(code, levels).pack, col))
                out[f.name] = np.frombuffer(packed, dtype=dtype).reshape(n, levels)
            else:
                out[f.name] = np.frombuffer(_struct(code, n).pack(*col), dtype=dtype)
        values.clear()
        if "start_s" in out and "end_s" in out:
            derive(out)
        return out


def columns(records: Iterable[OpRecord], names: Sequence[str] | None = None
            ) -> dict[str, Any]:
    """The records as columns, as Records.columns gives them."""
    b = Records()
    for r in records:
        b.add(r)
    return b.columns(names)


@lru_cache(maxsize=64)
def _struct(code: str, n: int) -> Struct:
    return Struct(f"{n}{code}")


def derive(cols: dict[str, Any]) -> dict[str, Any]:
    """Add the DERIVED columns to `cols` (from start_s, end_s and, for wait_s, compute_s)."""
    elapsed = cols["elapsed_s"] = cols["end_s"] - cols["start_s"]
    if "compute_s" in cols:
        cols["wait_s"] = elapsed - cols["compute_s"]
    return cols


class Totals:
    """Per-key reductions of record columns, by the schema. For each key (a step, a layer, an
    op's index, 0 for a whole run: small integers, as rows are kept for the range of keys
    seen): `n`, its records; `first_row`, the row (in the order records arrived) of its first;
    every `sum` field and DERIVED quantity summed; `first` fields from its first record and
    `last` fields from its last; and the first value of each field named in `keep` (such as a
    step's phase).

    Every sum runs one record at a time in the order records arrive (np.add.at is unbuffered),
    so no total depends on how the records were chunked, to the last bit: a run folded as it
    streams and its trace read back in chunks of any size give the same totals.

    >>> r = OpRecord(1, "decode", "h0.mlp", "mlp", "matmul", 0, 0.0, 1.0, 0.25, 0.5, 0.0,
    ...              (0.25,), (10,), 8, 4, 0.25, 0.0, (0,), (0,))
    >>> recs = [r, r._replace(start_s=1.0, end_s=2.0), r._replace(step=2, end_s=4.0)]
    >>> t = Totals(n_levels=1)
    >>> t.add(np.array([1, 1, 2]), columns(recs))
    >>> t.keys, t["n"].tolist(), t["elapsed_s"].tolist(), t["bytes"].tolist()
    ([1, 2], [2, 1], [2.0, 4.0], [[20], [10]])
    >>> t.row(1)["end_s"], t.row(1)["wait_s"], t.row(7)["n"]
    (2.0, 1.0, 0)
    """

    def __init__(self, n_levels: int, keep: Sequence[str] = (),
                 sums: Sequence[str] | None = None) -> None:
        """`sums`: the names, in SUMMED, of the sums to keep (default: all); `keep`: fields
        whose first value per key to keep."""
        self.n_levels = n_levels
        self.n_rows = 0  # records added
        self.keys: list[int] = []  # in order of first use
        self.rows: dict[int, int] = {}  # key -> its row
        self._lo = 0  # the key of _slot[0]
        self._slot = np.zeros(0, np.intp)  # key - _lo -> its row, -1 for none yet
        self._sums: dict[str, np.ndarray] = {"n": np.zeros(0, np.int64)}
        for name in SUMMED if sums is None else sums:
            f = SUMMED.get(name)
            if f is None:
                raise ValueError(f"{name!r} is not a sum; expected one of {', '.join(SUMMED)}")
            shape = (0, n_levels) if f.per_level else (0,)
            self._sums[name] = np.zeros(shape, np.float64 if f.dtype == "float64" else np.int64)
        self._first = [f.name for f in FIELDS if f.reduce == FIRST] + list(keep)
        self._last = [f.name for f in FIELDS if f.reduce == LAST]
        self._at = {"first_row": np.zeros(0, np.int64)}  # first and last values; first rows
        for c in (*self._first, *self._last):
            self._at[c] = np.zeros(0, FIELD[c].dtype)
        self.sums = list(self._sums)  # the summed totals, "n" first
        self.names = [*self.sums, *self._at]  # every total

    def add(self, keys: np.ndarray, cols: Mapping[str, Any],
            weights: np.ndarray | None = None) -> None:
        """Add records: `keys[j]` is record j's key, `cols` its columns (sim.trace.columns, or
        columns read from a trace). Every column the totals reduce must be there.
        `weights[j]` (whole numbers): how many executions record j stands for, in `n` and in
        every sum (a sampled decode step for the steps around it); default 1."""
        keys = np.asarray(keys, dtype=np.int64)
        n = len(keys)
        if n == 0:
            return
        self._cover(int(keys.min()), int(keys.max()))
        rows = self._slot[keys - self._lo]
        if rows.min() < 0:
            rows = self._admit(keys, rows, cols)
        k = len(self.keys)
        last = np.full(k, -1, np.intp)
        np.maximum.at(last, rows, np.arange(n))
        seen = np.flatnonzero(last >= 0)
        for c in self._last:
            self._at[c][seen] = np.asarray(cols[c])[last[seen]]
        if "wait_s" not in cols:
            cols = derive(dict(cols))
        sums = self._sums
        if weights is None:
            sums["n"][:k] += np.bincount(rows, minlength=k)
        else:
            w = np.asarray(weights, dtype=np.int64)
            sums["n"][:k] += np.bincount(rows, weights=w, minlength=k).astype(np.int64)
        add_at = np.add.at
        for name in self.sums[1:]:
            total, v = sums[name], np.asarray(cols[name])
            if weights is not None:
                v = v * (w[:, None] if v.ndim == 2 else w)
            if total.ndim == 2:
                for j in range(total.shape[1]):
                    add_at(total[:, j], rows, v[:, j])
            else:
                add_at(total, rows, v)
        self.n_rows += n

    def _cover(self, lo: int, hi: int) -> None:
        """Make room in _slot for the keys lo..hi."""
        old_lo, old = self._lo, self._slot
        if len(old) and old_lo <= lo and hi < old_lo + len(old):
            return
        if len(old):
            lo, hi = min(lo, old_lo), max(hi, old_lo + len(old) - 1)
            hi = max(hi, lo + 2 * len(old))  # headroom for keys that grow (steps)
        slot = np.full(hi - lo + 1, -1, np.intp)
        slot[old_lo - lo:old_lo - lo + len(old)] = old
        self._lo, self._slot = lo, slot

    def _admit(self, keys: np.ndarray, rows: np.ndarray, cols: Mapping[str, Any]) -> np.ndarray:
        """Give the keys not seen before their rows, in order of first use, and keep their
        first values; returns every record's row."""
        at = np.flatnonzero(rows < 0)
        new, first = np.unique(keys[at], return_index=True)
        order = np.argsort(first, kind="stable")
        new, src = new[order], at[first[order]]  # src: each new key's first record
        r0 = len(self.keys)
        dst = np.arange(r0, r0 + len(new))
        for key in new.tolist():
            self.rows[key] = len(self.keys)
            self.keys.append(key)
        self._slot[new - self._lo] = dst
        more = len(self.keys) - len(self._sums["n"])
        if more > 0:
            more = max(more, len(self._sums["n"]), 16)
            for table in (self._sums, self._at):
                for c, v in table.items():
                    table[c] = np.concatenate([v, np.zeros((more, *v.shape[1:]), v.dtype)])
        self._at["first_row"][dst] = self.n_rows + src
        for c in self._first:
            self._at[c][dst] = np.asarray(cols[c])[src]
        return self._slot[keys - self._lo]

    def __getitem__(self, name: str) -> np.ndarray:
        """One total per key, in the order of `keys`: (keys,), or (keys, levels) per level."""
        table = self._sums if name in self._sums else self._at
        return table[name][:len(self.keys)]

    def row(self, key: int) -> dict[str, Any]:
        """Every total of one key as Python numbers (a list per level); all zeros for a key no
        record had (an empty span)."""
        r = self.rows.get(key)
        out: dict[str, Any] = {}
        for name in self.names:
            col = self[name]
            out[name] = (col[r] if r is not None else np.zeros(col.shape[1:], col.dtype)).tolist()
        return out
