"""The record schema (FIELDS and OpRecord agree), Records buffering and the one reducer, Totals:
sequential sums, exact whatever the chunking."""

from __future__ import annotations

import doctest
import typing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.trace
from sim.trace import (
    DERIVED,
    FIELDS,
    FIRST,
    KEY,
    LAST,
    NONE,
    SUM,
    SUMMED,
    OpRecord,
    Records,
    Totals,
    columns,
)


def test_schema_and_oprecord_agree():
    assert OpRecord._fields == tuple(f.name for f in FIELDS)
    hints = typing.get_type_hints(OpRecord)
    for f in FIELDS:
        hint = hints[f.name]
        if f.per_level:
            assert typing.get_origin(hint) is tuple, f.name
            hint = typing.get_args(hint)[0]
        want = str if f.lookup else float if f.dtype.startswith("float") else int
        assert hint is want, f.name
        assert (np.dtype(f.dtype).kind == "f") == (want is float), f.name  # str: an index
        assert f.reduce in (KEY, SUM, FIRST, LAST, NONE)
        assert f.table in ("records", "ops")
        assert not (f.lookup and f.reduce != KEY), f.name  # names are grouped by, not summed
    assert {f.name for f in FIELDS if f.table == "ops"} == {"op_type", "kind", "layer"}
    assert [f.name for f in DERIVED] == ["elapsed_s", "wait_s"]
    assert set(SUMMED) == {"dispatch_s", "compute_s", "interconnect_s", "stall_s", "bytes",
                           "flops", "mops_bytes", "prefetch_s", "hit_bytes", "lookup_bytes",
                           "elapsed_s", "wait_s"}


def test_docstring_examples_run():
    assert doctest.testmod(sim.trace).failed == 0


def record(step: int = 1, op: str = "h0.mlp", start: float = 0.0, end: float = 1.0,
           compute: float = 0.5, stall: tuple[float, ...] = (0.25, 0.25),
           nbytes: tuple[int, ...] = (10, 20), layer: int = 0) -> OpRecord:
    return OpRecord(step, "decode", op, "mlp", "matmul", layer, start, end, 0.125, compute, 0.0,
                    stall, nbytes, 1000, 300, start + 0.125, 0.0, (0,) * len(nbytes),
                    (0,) * len(nbytes))


def test_records_buffer_flat_and_give_columns_in_the_schema():
    recs = [record(1, "a", 0.0, 1.0), record(2, "b", 1.0, 3.5, nbytes=(7, 9), layer=-1)]
    b = Records()
    for r in recs:
        b.add(r)
    assert b.values == [v for r in recs for v in r] and len(b) == 2
    c = b.columns()
    assert len(b) == 0 and b.columns() == {}
    assert c["op"] == ["a", "b"] and c["phase"] == ["decode", "decode"]
    assert c["step"].dtype == np.int64 and c["step"].tolist() == [1, 2]
    assert c["layer"].tolist() == [0, -1]
    assert c["bytes"].dtype == np.int64 and c["bytes"].tolist() == [[10, 20], [7, 9]]
    assert c["stall_s"].shape == (2, 2) and c["start_s"].tolist() == [0.0, 1.0]
    assert c["elapsed_s"].tolist() == [1.0, 2.5] and c["wait_s"].tolist() == [0.5, 2.0]
    assert set(columns(recs, ("step", "bytes"))) == {"step", "bytes"}


def test_totals_by_key():
    recs = [record(3, start=0.0, end=1.0, nbytes=(1, 2)), record(5, start=1.0, end=2.0),
            record(3, start=2.0, end=4.0, nbytes=(3, 4))]
    t = Totals(2, keep=("layer",))
    t.add(np.array([3, 5, 3]), columns(recs))
    assert t.keys == [3, 5] and t.rows == {3: 0, 5: 1} and t.n_rows == 3
    assert t["n"].tolist() == [2, 1] and t["first_row"].tolist() == [0, 1]
    assert t["start_s"].tolist() == [0.0, 1.0] and t["end_s"].tolist() == [4.0, 2.0]
    assert t["bytes"].tolist() == [[4, 6], [10, 20]] and t["bytes"].dtype == np.int64
    assert t["elapsed_s"].tolist() == [3.0, 1.0] and t["wait_s"].tolist() == [2.0, 0.5]
    assert t["flops"].tolist() == [2000, 1000]
    row = t.row(3)
    assert row["stall_s"] == [0.5, 0.5] and row["n"] == 2 and isinstance(row["n"], int)
    assert t.row(4)["n"] == 0 and t.row(4)["bytes"] == [0, 0]  # an empty span


def test_totals_keep_only_the_sums_asked_for():
    t = Totals(2, sums=("elapsed_s",))
    t.add(np.array([0]), columns([record()]))
    assert t.sums == ["n", "elapsed_s"] and "compute_s" not in t.names and "end_s" in t.names
    with pytest.raises(ValueError, match="'start_s' is not a sum"):
        Totals(2, sums=("start_s",))


def test_totals_sum_in_record_order_not_pairwise():
    """0.1 added a thousand times, one at a time, is not numpy's pairwise sum of them."""
    v = np.full(1000, 0.1)
    seq = 0.0
    for x in v.tolist():
        seq += x
    assert seq != float(np.sum(v))  # so the test below can tell them apart
    recs = [record(start=0.0, end=x, compute=x) for x in v.tolist()]
    t = Totals(2)
    t.add(np.zeros(1000, np.int64), columns(recs))
    assert t["compute_s"][0] == seq and t["elapsed_s"][0] == seq


floats = st.floats(1e-12, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.tuples(st.integers(-2, 6), floats, floats, st.integers(0, 2**40)),
                     min_size=1, max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=6))
def test_totals_do_not_depend_on_the_chunks(data, cuts):
    """Any chunking gives, exactly, the sums a plain loop adds up one record at a time."""
    recs, t0 = [], 0.0
    for key, dt, c, b in data:
        recs.append(record(step=key, start=t0, end=t0 + dt, compute=c, stall=(c, dt),
                           nbytes=(b, 2 * b), layer=key))
        t0 += dt
    keys = np.array([k for k, *_ in data])
    whole, parts = Totals(2, keep=("layer",)), Totals(2, keep=("layer",))
    whole.add(keys, columns(recs))
    bounds = sorted({0, len(recs), *(x for x in cuts if x < len(recs))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        parts.add(keys[a:b], columns(recs[a:b]))
    assert whole.keys == parts.keys == list(dict.fromkeys(keys.tolist()))
    for name in whole.names:
        np.testing.assert_array_equal(whole[name], parts[name], err_msg=name)
    want: dict[int, list] = {}
    for r, k in zip(recs, keys.tolist(), strict=True):
        acc = want.setdefault(k, [0, 0.0, 0.0, 0.0, 0, r.start_s, 0.0])
        acc[0] += 1
        acc[1] += r.compute_s
        acc[2] += r.end_s - r.start_s
        acc[3] += (r.end_s - r.start_s) - r.compute_s
        acc[4] += r.bytes[1]
        acc[6] = r.end_s
    for k, (n, c, e, w, b, s, end) in want.items():
        got = whole.row(k)
        assert (got["n"], got["compute_s"], got["elapsed_s"], got["wait_s"]) == (n, c, e, w)
        assert (got["bytes"][1], got["start_s"], got["end_s"], got["layer"]) == (b, s, end, k)
