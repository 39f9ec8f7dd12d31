"""HDF5 traces: layout, round trip, summary rebuilt from the file, atomic writes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from runs import HIER_DIR, simulate_spec

import workloads
from memwall import cli
from sim import (
    OpRecord,
    TraceFileError,
    TraceWriter,
    hierarchy_to_dict,
    inspect_trace,
    load_hierarchy,
    read_trace,
)
from sim.trace_file import SCHEMA_VERSION
from sim.trace_reader import hierarchy_from_dict


def small_run(path: Path, chunk_rows: int = 65536, hier_name: str = "hbm_accel.yaml"
              ) -> tuple[dict, list[OpRecord]]:
    """gpt2, prompt 8, generate 4, traced to `path`; returns the summary and the records."""
    hier = load_hierarchy(hier_name, search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=4)
    records: list[OpRecord] = []
    with TraceWriter(path, hier, ["memwall", "test"], chunk_rows=chunk_rows) as w:
        summary = simulate_spec(spec, hier, sinks=(w.add, records.append))
        w.finish(summary)
    return summary, records


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[OpRecord]]:
    path = tmp_path_factory.mktemp("trace") / "run.h5"
    summary, records = small_run(path, chunk_rows=100)  # several chunks; steps span them
    return path, summary, records


def close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-18)
    return a == b


def test_records_round_trip(traced):
    path, _, records = traced
    t = read_trace(path)
    assert list(t.op_records()) == records
    assert t.rows == (0, len(records))


def test_summary_rebuilt_from_the_trace_equals_the_runs(traced):
    path, summary, _ = traced
    assert close(inspect_trace(str(path))["summary"], summary)
    assert read_trace(path, records=False).summary == json.loads(json.dumps(summary))


def test_bytes_per_level_add_up_to_bytes_by_level(traced):
    path, summary, _ = traced
    t = read_trace(path)
    for i, name in enumerate(t.level_names):
        assert int(t.records["bytes"][:, i].sum()) == summary["bytes_by_level"][name]
        assert int(t.steps["bytes"][:, i].sum()) == summary["bytes_by_level"][name]
        assert t.steps["stall_s"][:, i].sum() == pytest.approx(summary["stall_s"][name])


def test_steps_table_matches_the_records(traced):
    path, summary, records = traced
    t = read_trace(path)
    assert t.steps["step"].tolist() == [0, 1, 2, 3]
    assert t.steps["n_ops"].sum() == len(records)
    assert t.steps["compute_s"].sum() == pytest.approx(summary["compute_s"])
    k = 2
    mine = [r for r in records if r.step == k]
    assert t.steps["start_s"][k] == mine[0].start_s and t.steps["end_s"][k] == mine[-1].end_s
    assert int(t.steps["first"][k]) == records.index(mine[0])


def test_layout_is_self_describing(traced):
    path, summary, _ = traced
    with h5py.File(path) as f:
        a = f.attrs
        assert a["format"] == "memwall-trace" and a["schema_version"] == SCHEMA_VERSION
        assert json.loads(a["command_line"]) == ["memwall", "test"]
        assert json.loads(a["workload"])["workload"] == "gpt2"
        assert json.loads(a["workload"])["prompt_len"] == 8
        assert "T" in a["created"] and a["memwall_version"]
        ds = f["records/stall_s"]
        assert ds.ndim == 2 and ds.shape[1] == len(f["levels/name"])
        assert ds.compression == "gzip" and ds.shuffle and ds.fletcher32 and ds.chunks
        assert ds.attrs["units"].startswith("s")
        assert f["records/op"].dtype == np.int32 and len(f["ops/name"]) < len(ds)
        assert set(f["lookup/kinds"].asstr()[()]) <= {"matmul", "vector", "collective"}
    t = read_trace(path, records=False)
    assert hierarchy_to_dict(t.hierarchy) == json.loads(json.dumps(
        hierarchy_to_dict(load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR]))))


def test_chunk_size_does_not_change_the_contents(traced, tmp_path):
    path, _, _ = traced
    small_run(tmp_path / "one.h5")
    a, b = read_trace(path), read_trace(tmp_path / "one.h5")
    for c in a.records:
        np.testing.assert_array_equal(a.records[c], b.records[c])
    for c in a.steps:
        np.testing.assert_array_equal(a.steps[c], b.steps[c])


def test_token_range_and_flat_table(traced):
    path, _, records = traced
    t = read_trace(path, tokens=(1, 3))
    assert set(t.records["step"].tolist()) == {1, 2}
    cols = t.table()
    n = sum(1 for r in records if r.step in (1, 2))
    assert all(v.ndim == 1 and len(v) == n for v in cols.values())
    assert "stall_s.hbm" in cols and "bytes.l2" in cols and cols["op_name"][0] == records[
        [r.step for r in records].index(1)].op
    assert len(t.step_table()["step"]) == 2


def test_hierarchy_dict_round_trip():
    h = load_hierarchy("hbm_accel_tiered.yaml", search_dirs=[HIER_DIR])
    assert hierarchy_from_dict(hierarchy_to_dict(h)) == h


def test_a_run_that_raises_leaves_no_file(tmp_path):
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=4)
    seen = []

    def boom(r: OpRecord) -> None:
        seen.append(r)
        if len(seen) == 250:
            raise RuntimeError("killed")

    target = tmp_path / "run.h5"
    with pytest.raises(RuntimeError), TraceWriter(target, hier, chunk_rows=64) as w:
        simulate_spec(spec, hier, sinks=(w.add, boom))
        w.finish({})
    assert list(tmp_path.iterdir()) == []


def test_unfinished_writer_keeps_a_hidden_temporary_name(tmp_path):
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    w = TraceWriter(tmp_path / "run.h5", hier)
    assert not (tmp_path / "run.h5").exists()
    assert [p.name.startswith(".run.h5.") for p in tmp_path.iterdir()] == [True]
    w.abort()
    assert list(tmp_path.iterdir()) == []


def _expect_error(path: Path, words: str) -> None:
    with pytest.raises(TraceFileError) as e:
        read_trace(path)
    msg = str(e.value)
    assert str(path) in msg and words in msg and "\n" not in msg


def test_truncated_file(traced, tmp_path):
    bad = tmp_path / "cut.h5"
    data = traced[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _expect_error(bad, "truncated")


def test_corrupted_chunk_fails_its_checksum(traced, tmp_path):
    bad = tmp_path / "flip.h5"
    data = bytearray(traced[0].read_bytes())
    with h5py.File(traced[0]) as f:
        info = f["records/start_s"].id.get_chunk_info(0)
    for i in range(info.byte_offset + 16, info.byte_offset + 48):
        data[i] ^= 0xFF
    bad.write_bytes(bytes(data))
    _expect_error(bad, "damaged")


def test_foreign_files(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    _expect_error(other, "not a memwall trace")
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    _expect_error(text, "not a readable HDF5 file")
    _expect_error(tmp_path / "missing.h5", "no such file")


def test_unknown_schema_version(traced, tmp_path):
    newer = tmp_path / "v99.h5"
    newer.write_bytes(traced[0].read_bytes())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = 99
    _expect_error(newer, "unknown trace schema version 99")


def test_cli_reports_bad_files_in_one_line(tmp_path, capsys):
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    for argv in (["inspect", str(text)], ["export", str(text), "--perfetto", "o.json"],
                 ["plot", str(text), "--kind", "roofline", "-o", str(tmp_path / "x.png")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("memwall: error: ") and str(text) in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_cli_trace_flag(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = ["--workload", "gpt2", "--hier", "hbm_accel.yaml", "--prompt-len", "8",
            "--gen-len", "2", "--trace", str(out), "--json", "-"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    t = read_trace(out, records=False)
    assert t.summary == summary and t.attrs["command_line"] == ["memwall", *argv]


def test_iter_records_streams_in_bounded_chunks(traced):
    path, _, records = traced
    from sim import iter_records

    t = read_trace(path, records=False)
    assert list(iter_records(t, rows=(0, len(records)), read_rows=100)) == records


def test_op_totals_are_the_records_summed_in_order_whatever_the_reads(traced):
    path, _, records = traced
    t = read_trace(path, records=False)
    from sim import op_totals

    tot, small = op_totals(t), op_totals(t, read_rows=7)
    assert tot.keys() == small.keys() >= {"calls", "elapsed_s", "compute_s", "flops",
                                          "mops_bytes", "stall_s", "bytes", "wait_s"}
    for c in tot:
        np.testing.assert_array_equal(tot[c], small[c], err_msg=c)
    row = {name: i for i, name in enumerate(t.ops["name"].tolist())}
    want: dict[str, list] = {}
    for r in records:
        acc = want.setdefault(r.op, [0, 0.0, 0, [0] * len(r.bytes)])
        acc[0] += 1
        acc[1] += r.end_s - r.start_s
        acc[2] += r.flops
        acc[3] = [a + b for a, b in zip(acc[3], r.bytes, strict=True)]
    for op, (calls, elapsed, flops, nbytes) in want.items():
        i = row[op]
        assert (tot["calls"][i], tot["elapsed_s"][i], tot["flops"][i]) == (calls, elapsed, flops)
        assert tot["bytes"][i].tolist() == nbytes


def test_steps_table_is_the_schemas(traced):
    from sim.trace import FIELDS, SUM

    t = read_trace(traced[0], records=False)
    sums = [f.name for f in FIELDS if f.reduce == SUM]
    assert set(t.steps) == {"step", "phase", "first", "n_ops", "start_s", "end_s", *sums}
    assert set(t.records) == set() and set(read_trace(traced[0]).records) == {
        f.name for f in FIELDS if f.table == "records"}


FSIZE_RUN = """
import resource, sys
sys.path.insert(0, {root!r})
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from memwall import cli
sys.exit(cli.main(["--workload", "gpt2", "--hier", "hbm_accel", "--prompt-len", "8",
                   "--gen-len", "150", "--engine", "analytic", "--trace", {trace!r}]))
"""


@pytest.mark.parametrize("limit, message", [
    (100_000, "no room to write a trace"),
    (2_200_000, r"cannot write the trace: File too large \(.* MiB more needed"),
])
def test_a_file_size_limit_while_writing_a_trace_is_one_line_and_leaves_nothing(
        tmp_path, limit, message):
    """HDF5 crashes (SIGSEGV) on a failed write, so the writer checks room first."""
    import re
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    code = FSIZE_RUN.format(root=root, limit=limit, trace=str(tmp_path / "t.h5"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert re.search(f"memwall: error: --trace .*t.h5: {message}", p.stderr)
    assert p.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def _resign(f: h5py.File) -> None:
    """Recompute every digest, as a careful forger would: only consistency checks remain."""
    from sim import trace_digest

    digests: dict[str, str] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            values = obj.asstr()[()] if obj.dtype.kind == "O" else obj[()]
            digests[name] = obj.attrs["sha256"] = trace_digest.of(values)

    f.visititems(visit)
    f.attrs["sha256"] = trace_digest.root(dict(f.attrs), digests)


def _set(key: str, value: object):
    return lambda f: f.attrs.__setitem__(key, value)


def _summary_times(factor: float):
    def change(f: h5py.File) -> None:
        s = json.loads(f.attrs["summary"])
        s["total_s"] *= factor
        f.attrs["summary"] = json.dumps(s)
    return change


def _column(name: str, index: int, value: object, resign: bool = False):
    def change(f: h5py.File) -> None:
        values, attrs = f[name][()], dict(f[name].attrs)
        values[index] = value
        del f[name]
        f.create_dataset(name, data=values).attrs.update(attrs)
        if resign:
            _resign(f)
    return change


@pytest.mark.parametrize("change, message", [
    (_summary_times(1.0001), r"the root attributes \(summary, hierarchy, ...\) fail their sha256"),
    (_set("summary", json.dumps([1, 2])), "attribute 'summary' = '\\[1, 2\\]'; expected JSON "
     "text of an object"),
    (_set("hierarchy", json.dumps(3)), "attribute 'hierarchy' = '3'; expected JSON text of an"),
    (_set("runtime", json.dumps([1])), "attribute 'runtime' .* an object or null"),
    (_set("n_records", "many"), "n_records = 'many'; expected a whole number"),
    (_column("ops/kind", 0, 99), "/ops/kind fails its sha256 checksum"),
    (_column("lookup/phases", 0, "encode"), "/lookup/phases fails its sha256 checksum"),
    (_column("steps/first", -1, 10**6), "/steps/first fails its sha256 checksum"),
    (_column("records/phase", 3, 1), "/records/phase fails its sha256 checksum"),
    (_column("ops/kind", 0, 99, resign=True), r"/ops/kind holds 99; expected an index in 0\.\.1"),
    (_column("steps/first", -1, 10**6, resign=True), "/steps/first and /steps/n_ops do not tile"),
    (_column("steps/end_s", 0, float("nan"), resign=True), "/steps/end_s holds a value that is "
     "not finite"),
    (_column("records/op", 3, 10**6, resign=True), r"/records/op holds 1000000; expected an "
     r"index in 0\.\."),
    (_column("records/end_s", 3, float("inf"), resign=True), "/records/end_s holds a value "
     "that is not finite"),
    (lambda f: (_summary_times(1.1)(f), _resign(f)), "the summary's total_s = .* but the "
     "records give"),
])
def test_a_damaged_or_inconsistent_trace_is_refused_by_name(traced, tmp_path, capsys, change,
                                                            message):
    import re

    bad = tmp_path / "bad.h5"
    bad.write_bytes(traced[0].read_bytes())
    with h5py.File(bad, "r+") as f:
        change(f)
    assert cli.main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(f"^memwall: error: {re.escape(str(bad))}: "
                                              f"(damaged memwall trace: )?{message}", err), err


def test_every_dataset_and_the_root_carry_a_sha256(traced):
    from sim import trace_digest

    with h5py.File(traced[0]) as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert {n.split("/")[0] for n in names} == {"lookup", "ops", "levels", "records", "steps"}
        for n in names:
            values = f[n].asstr()[()] if f[n].dtype.kind == "O" else f[n][()]
            assert f[n].attrs["sha256"] == trace_digest.of(values)
        digests = {n: f[n].attrs["sha256"] for n in names}
        assert f.attrs["sha256"] == trace_digest.root(dict(f.attrs), digests)
