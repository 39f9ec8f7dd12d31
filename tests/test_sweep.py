"""Sweeps: file validation, grid and zip expansion, resume, failure isolation, the table, and
both executors (an embedded LocalCluster; a real `dask scheduler` + `dask worker` pair)."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memwall import cli, sweeps
from memwall.sweep_file import SweepError, parse_sweep
from memwall.sweep_results import groups, pareto, read_point, verdict, write_point
from sim import MemwallError
from sim.units import format_quantity

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
base: hbm_accel.yaml
engine: analytic
workloads:
  - {workload: gpt2, prompt_len: 4, gen_len: 2}
  - {workload: llama2-70b, prompt_len: 4, gen_len: 2}
grid:
  memory.l2.capacity: ["50 MiB", "256 MiB"]
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- the file ------------------------------------------------------------------------------


def test_grid_and_zip_expand_to_every_combination() -> None:
    s = parse_sweep("""\
base: hbm_accel.yaml
workloads: [gpt2]
grid:
  memory.l2.capacity: ["50 MiB", "256 MiB", "1 GiB"]
zip:
  memory.hbm.bandwidth: ["3.35 TB/s", "4.8 TB/s"]
  memory.hbm.efficiency: [0.85, 0.9]
""", "s.yaml")
    assert s.swept_paths == ("memory.l2.capacity", "memory.hbm.bandwidth",
                             "memory.hbm.efficiency")
    combos = [tuple(v.text for v in c) for c in s.combinations()]
    assert len(combos) == 6 and len(set(combos)) == 6
    assert ("256 MiB", "4.8 TB/s", "0.9") in combos
    assert all((bw, eff) in {("3.35 TB/s", "0.85"), ("4.8 TB/s", "0.9")} for _, bw, eff in combos)
    assert s.workloads[0].workload == "gpt2" and s.engine == "des"


def test_several_zip_groups_and_no_grid() -> None:
    s = parse_sweep("""\
base: hbm_accel.yaml
workloads: [gpt2]
zip:
  - {memory.l2.capacity: ["50 MiB", "1 GiB"], memory.l2.bandwidth: ["5.5 TB/s", "8 TB/s"]}
  - {memory.hbm.bandwidth: ["3.35 TB/s", "4.8 TB/s", "5.5 TB/s"]}
""", "s.yaml")
    assert len(s.combinations()) == 6


@pytest.mark.parametrize("text, message", [
    ("base: hbm_accel.yaml\nworkloads: [gpt2]\ngird: {}\n",
     's.yaml:3: gird: unknown key; did you mean "grid"?'),
    ("base: hbm_accel.yaml\nworkloads:\n  - {workload: gpt2, gen_lne: 4}\n",
     's.yaml:3: workloads[0].gen_lne: unknown key; did you mean "gen_len"?'),
    ("base: hbm_accel.yaml\nworkloads:\n  - {workload: gpt2, prompt_len: 0}\n",
     "s.yaml:3: workloads[0].prompt_len: 0 is out of range"),
    ("base: hbm_accel.yaml\nworkloads:\n  - {workload: gpt2, kv_dtype: fp9}\n",
     's.yaml:3: workloads[0].kv_dtype: "fp9" is not known'),
    ("base: hbm_accel.yaml\nengine: dse\nworkloads: [gpt2]\n",
     's.yaml:2: engine: "dse" is not known; did you mean "des"?'),
    ("base: hbm_accel.yaml\nworkloads: [gpt2]\nzip:\n  memory.l2.capacity: [1 MiB, 2 MiB]\n"
     "  memory.hbm.bandwidth: [1 TB/s]\n",
     "s.yaml:5: zip.memory.hbm.bandwidth: a list of 1 values; expected 2"),
    ("base: hbm_accel.yaml\nworkloads: [gpt2]\ngrid:\n  memory.l2.capacity: []\n",
     "s.yaml:4: grid.memory.l2.capacity: a list is not a non-empty list"),
    ("base: hbm_accel.yaml\nworkloads: [gpt2]\ngrid:\n  memory.l2.capacity: [1 MiB]\n"
     "zip:\n  memory.l2.capacity: [2 MiB]\n",
     "s.yaml:6: memory.l2.capacity: swept twice (first at s.yaml:4)"),
    ("workloads: [gpt2]\n", "s.yaml:1: base: missing required key"),
    ("base: [\n", "s.yaml:2: YAML syntax error"),
])
def test_file_errors_name_file_line_key_and_value(text: str, message: str) -> None:
    with pytest.raises(SweepError) as e:
        parse_sweep(text, "s.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("extra, message", [
    ('grid:\n  memory.l2.capacity: ["50 MiB", "256 MiX"]\n',
     'sweep.yaml:8: memory.l2.capacity: "256 MiX" has unknown unit "MiX"'),
    ('grid:\n  memory.l3.capacity: ["50 MiB"]\n',
     'sweep.yaml:8: memory.l3: no entry named "l3"; expected one of registers, l1, l2'),
    ('grid:\n  memory.hbm.efficiency: [0.9, 1.5]\n',
     "sweep.yaml:8: memory.hbm.efficiency: 1.5 is not a fraction"),
])
def test_bad_values_fail_fast_with_the_sweep_files_line(tmp_path: Path, extra: str,
                                                        message: str) -> None:
    path = _write(tmp_path, TINY.split("grid:")[0] + "\n" + extra)
    s = sweeps.read_sweep(path)
    with pytest.raises(MemwallError) as e:
        sweeps.resolve(s)
    assert str(e.value).startswith(str(path.parent / message)) and "\n" not in str(e.value)


def test_unknown_workload_and_base_name_the_line(tmp_path: Path) -> None:
    s = sweeps.read_sweep(_write(tmp_path, TINY.replace("llama2-70b", "llama9")))
    with pytest.raises(SweepError, match=r"sweep\.yaml:5: workload llama9: "):
        sweeps.resolve(s)
    s = sweeps.read_sweep(_write(tmp_path, TINY.replace("hbm_accel.yaml", "nope.yaml")))
    with pytest.raises(SweepError, match=r'sweep\.yaml:1: base: "nope.yaml" not found'):
        sweeps.resolve(s)


def test_keys_follow_the_resolved_configuration(tmp_path: Path) -> None:
    s = sweeps.read_sweep(_write(tmp_path, TINY.replace('"256 MiB"', '"52428800 B"')))
    points = sweeps.resolve(s)
    assert len(points) == 4 and all(p.task is not None for p in points)
    assert points[0].key == points[1].key  # 50 MiB is 52428800 B: the same design
    assert points[0].key != points[2].key  # another workload
    assert [p.run["memory.l2.capacity"] for p in points[:2]] == ["50 MiB", "52428800 B"]


# --- results -------------------------------------------------------------------------------


def test_point_files_are_whole_or_absent(tmp_path: Path) -> None:
    write_point(tmp_path, "abc", {"key": "abc", "status": "ok"})
    assert read_point(tmp_path, "abc") == {"key": "abc", "status": "ok"}
    (tmp_path / "points" / "bad.json").write_text('{"key": "bad", "sta')  # not ours: rerun it
    assert read_point(tmp_path, "bad") is None and read_point(tmp_path, "none") is None
    assert not [p for p in (tmp_path / "points").iterdir() if p.name.startswith(".")]


def test_pareto_front_per_workload() -> None:
    rows = [{"workload": "w", "batch": 1, "prompt_len": 1, "gen_len": 2, "weight_dtype": "bf16",
             "act_dtype": "bf16", "kv_dtype": "bf16", "tp": 1, "status": "ok", "a": a,
             "decode_s_per_token": t} for a, t in (("1 MiB", 3.0), ("2 MiB", 2.0),
                                                   ("4 MiB", 2.5), ("8 MiB", 1.0))]
    assert pareto(rows, {"a": ["1 MiB", "2 MiB", "4 MiB", "8 MiB"]}) == {0, 1, 3}


def _row(t: float, tput: float | None = None, **swept: object) -> dict[str, object]:
    return {"workload": "w", "batch": 1, "prompt_len": 1, "gen_len": 2, "weight_dtype": "bf16",
            "act_dtype": "bf16", "kv_dtype": "bf16", "tp": 1, "runtime": "compiled",
            "routing": None, "seed": None, "status": "ok", "decode_s_per_token": t,
            "throughput_tokens_per_s": tput, **swept}


def test_a_higher_latency_is_a_cheaper_design() -> None:
    """Equally fast, the slower L2 costs less and wins; faster with a quicker L2, both are
    on the front. Bandwidth the other way: more costs more."""
    lat = {"memory.l2.latency": ["258 cycles", "300 cycles"]}
    same = [_row(1.0, **{"memory.l2.latency": v}) for v in lat["memory.l2.latency"]]
    assert pareto(same, lat) == {1}
    faster = [_row(0.9, **{"memory.l2.latency": "258 cycles"}),
              _row(1.0, **{"memory.l2.latency": "300 cycles"})]
    assert pareto(faster, lat) == {0, 1}
    bw = {"memory.hbm.bandwidth": ["3 TB/s", "4 TB/s"]}
    assert pareto([_row(1.0, **{"memory.hbm.bandwidth": v}) for v in bw[
        "memory.hbm.bandwidth"]], bw) == {0}


def test_a_swept_batch_trades_time_per_token_for_throughput() -> None:
    axes = {"batch": ["1", "4", "8"]}
    rows = [_row(1.0, 1.0, batch=1), _row(1.5, 4 / 1.5, batch=4), _row(3.0, 8 / 3.0, batch=8)]
    assert pareto(rows, axes) == {0, 1}  # batch 8: slower than 4 for no more tokens/s
    assert groups(rows, axes) == ["w"] * 3  # one workload, three designs
    assert groups(rows, {}) == ["w b1", "w b4", "w b8"]  # entries of their own: three


def test_the_whole_front_is_printed_or_how_many_more() -> None:
    axes = {"memory.hbm.bandwidth": [f"{i} TB/s" for i in range(1, 26)]}
    rows = [_row(1.0 / i, **{"memory.hbm.bandwidth": f"{i} TB/s"}) for i in range(1, 26)]
    text = verdict(rows, axes)
    assert "front: 25 of 25 designs" in text
    assert text.count("    front  ") == 20 and "and 5 more on the front" in text
    assert "memory.hbm.bandwidth (more costs more)" in text
    assert "front  " + format_quantity(1 / 25, "time") in text
    small = verdict(rows[:5], {"memory.hbm.bandwidth": axes["memory.hbm.bandwidth"][:5]})
    assert small.count("    front  ") == 5 and "more on the front" not in small


def test_a_sweep_whose_every_point_fails_exits_1_and_says_why(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, TINY.replace("  - {workload: gpt2, prompt_len: 4, gen_len: 2}\n", ""))
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 1
    o, err = capsys.readouterr()
    assert "every design failed" in o and "no plot" in o
    assert "memwall: error: 2 of 2 points failed: 2 x hbm_accel: weights need" in err
    assert "warning" not in err and not (out / "sweep.png").exists()


def test_progress_is_a_plain_line_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = sweeps.Progress(2, stream=stream)
    progress(True)
    progress(False)
    assert stream.getvalue().splitlines()[-1].startswith("sweep: 2/2 points, 1 failed")


# --- running: embedded cluster, resume, failure isolation, the table ----------------------


def test_embedded_cluster_resume_and_failure_isolation(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    path, out = _write(tmp_path, TINY), tmp_path / "out"
    argv = [str(path), "--out", str(out), "--workers", "2"]
    assert cli.main(["sweep", *argv]) == 1  # two points failed: said, and the status is 1
    said = capsys.readouterr()
    assert said.err.splitlines()[-1].startswith(
        "memwall: error: 2 of 4 points failed: 2 x hbm_accel: weights need")
    assert "best designs" in said.out and "(4 run now, 0 before; 2 failed)" in said.out
    assert "sweep:" not in said.err  # no progress off a terminal
    rows = _rows(out)
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4
    columns = list(rows[0])
    assert columns[:15] == ["workload", "batch", "prompt_len", "gen_len", "weight_dtype",
                            "act_dtype", "kv_dtype", "tp", "runtime", "routing", "seed",
                            "engine", "prefetch_depth", "memory.l2.capacity", "hierarchy"]
    assert {r["routing"] for r in rows} == {""}  # dense models: no routing
    for c in ("decode_s_per_token", "total_s", "stall_s.hbm", "stall_s.dispatch",
              "bytes_by_level.l2", "busy_s.compute", "verdict"):
        assert c in columns
    assert columns[-4:] == ["pareto", "status", "error", "key"]
    assert [r["pareto"] for r in rows] == ["True", "True", "", ""]  # gpt2 faster with more L2
    assert [r["memory.l2.capacity"] for r in rows] == ["50 MiB", "256 MiB"] * 2
    ok = [r for r in rows if r["workload"] == "gpt2"]
    bad = [r for r in rows if r["workload"] == "llama2-70b"]
    assert {r["status"] for r in ok} == {"ok"} and all(float(r["total_s"]) > 0 for r in ok)
    assert {r["status"] for r in bad} == {"error"} and all(r["total_s"] == "" for r in bad)
    assert all("weights need" in r["error"] and "\n" not in r["error"] for r in bad)
    assert (out / "sweep.png").stat().st_size > 1000

    # a crash: two point files and the table lost; a rerun redoes just those two
    points = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    lost = [r["key"] for r in rows[:2]]
    for key in lost:
        (out / "points" / f"{key}.json").unlink()
    (out / "results.csv").unlink()
    time.sleep(0.01)
    assert cli.main(["sweep", *argv]) == 1
    assert (f"4 of 4 points in {out / 'results.csv'} (2 run now, 2 before; 2 failed), plot "
            f"{out / 'sweep.png'}") in capsys.readouterr().out
    again = _rows(out)
    assert [r["key"] for r in again] == [r["key"] for r in rows]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert sorted(after) == sorted(points)
    assert {n for n in after if after[n] != points[n]} == {f"{k}.json" for k in lost}
    assert [r["total_s"] for r in again] == [r["total_s"] for r in rows]


# --- running: a real scheduler and worker on 127.0.0.1 ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cluster() -> Iterator[str]:
    """`dask scheduler` and one `dask worker`, separate processes on loopback only."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this interpreter
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(
            [*dask, "worker", address, "--host", "127.0.0.1",
             "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_existing_cluster_at_scheduler(tmp_path: Path, dask_cluster: str) -> None:
    path, out = _write(tmp_path, TINY), tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--scheduler", dask_cluster]
    assert cli.main(argv) == 1  # llama2-70b fits no design
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"]
    assert cli.main(argv) == 1
    assert len(_rows(out)) == 4 and len(list((out / "points").iterdir())) == 4


def test_unreachable_scheduler_is_one_line(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeps, "CONNECT_TIMEOUT", "1s")
    path = _write(tmp_path, TINY)
    with pytest.raises(SweepError, match="cannot connect"):
        sweeps.sweep(path, tmp_path / "o", scheduler=f"tcp://127.0.0.1:{_free_port()}")


def test_a_grid_too_large_is_refused_before_anything_is_built() -> None:
    big = ", ".join(str(i) for i in range(1000))
    with pytest.raises(SweepError, match=r"s\.yaml:1: 2,000,000 points .* expected at most "
                                         "100,000"):
        parse_sweep(f"base: hbm_accel.yaml\nworkloads: [gpt2, llama2-7b]\ngrid:\n"
                    f"  memory.l2.capacity: [{big}]\n  memory.hbm.bandwidth: [{big}]\n",
                    "s.yaml")


@pytest.mark.parametrize("address", ["foo", "tcp://", "tcp://127.0.0.1:notaport",
                                     "udp://1.2.3.4:5", "tcp://host:99999", "tcp://host"])
def test_a_malformed_scheduler_address_is_one_line(tmp_path: Path, capsys, address) -> None:
    path = _write(tmp_path, TINY)
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--scheduler",
                     address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"memwall: error: --scheduler {address}: ") and err.count("\n") == 1
    assert "expected an address such as tcp://HOST:8786" in err
    assert not (tmp_path / "o").exists()  # refused before anything was made


def test_run_settings_and_runtimes_are_grid_axes(tmp_path: Path) -> None:
    """batch, a runtime and a runtime path swept as grid axes; a combination a model cannot
    run (tp 5 does not divide gpt2's 12 heads) fails as a point, the others run."""
    path = _write(tmp_path, """\
base: hbm_accel.yaml
engine: analytic
workloads:
  - {workload: gpt2, prompt_len: 4, gen_len: 2}
grid:
  batch: [1, 4]
  runtime: [compiled, tensorrt-llm]
  runtime.kernels.launch: ["1 us", "3 us"]
  tp: [1, 5]
""")
    points = sweeps.resolve(sweeps.read_sweep(path))
    assert len(points) == 16
    ok = [p for p in points if p.task is not None]
    assert {p.run["tp"] for p in ok} == {1} and len(ok) == 8
    assert all("tp = 5" in p.error for p in points if p.task is None)
    r = next(p.task for p in ok if p.run["batch"] == 4 and p.run["runtime"] == "tensorrt-llm"
             and p.run["runtime.kernels.launch"] == "3 us")
    assert (r.spec.batch, r.runtime.name, r.runtime.launch_s) == (4, "tensorrt-llm", 3e-6)
    assert len({p.key for p in ok}) == 8  # every design its own key


@pytest.mark.parametrize("axis, values, message", [
    ("batch", "[1, two]", "sweep.yaml:6: batch: 'two' is not an integer"),
    ("runtime", "[vllm, nope]", 'sweep.yaml:6: runtime: runtime "nope" not found'),
    ("runtime.kernels.launch", '["2 us", "2 zz"]',
     'sweep.yaml:6: kernels.launch: "2 zz" has unknown unit'),
    ("weight_dtype", "[int8, int3]", "sweep.yaml:6: weight_dtype: 'int3'; expected one of"),
    ("batch", "[0]", "sweep.yaml:6: batch: '0'; expected an integer >= 1"),
])
def test_bad_swept_settings_fail_fast_with_their_line(tmp_path: Path, axis: str, values: str,
                                                      message: str) -> None:
    path = _write(tmp_path, f"base: hbm_accel.yaml\nworkloads:\n  - gpt2\n\ngrid:\n"
                            f"  {axis}: {values}\n")
    with pytest.raises(SweepError) as e:
        sweeps.resolve(sweeps.read_sweep(path))
    assert str(e.value).startswith(str(tmp_path / message)), str(e.value)


def test_workload_settings_swept_end_to_end(tmp_path: Path, capsys) -> None:
    """batch, prompt_len and weight_dtype as grid axes, run: each point runs its settings; a
    swept prompt_len parts workloads, a swept batch or dtype is a design of one workload."""
    path = _write(tmp_path, """\
base: hbm_accel.yaml
engine: analytic
workloads:
  - {workload: gpt2, gen_len: 3}
grid:
  batch: [1, 4]
  prompt_len: [4, 8]
  weight_dtype: [bf16, int8]
""")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 0
    rows = _rows(out)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    got = {(r["batch"], r["prompt_len"], r["weight_dtype"]) for r in rows}
    assert got == {(b, p, w) for b in ("1", "4") for p in ("4", "8") for w in ("bf16", "int8")}
    for r in rows:
        point = read_point(out, r["key"])["summary"]
        assert (point["batch"], point["prompt_len"], point["precision"]["weights"]) == (
            int(r["batch"]), int(r["prompt_len"]), r["weight_dtype"])
        assert float(r["throughput_tokens_per_s"]) == pytest.approx(
            int(r["batch"]) * float(r["tokens_per_s"]))
    hbm = {(r["batch"], r["prompt_len"], r["weight_dtype"]): int(r["bytes_by_level.hbm"])
           for r in rows}
    assert hbm[("1", "4", "int8")] < hbm[("1", "4", "bf16")]
    text = capsys.readouterr().out
    assert "  gpt2 p4: fastest" in text and "  gpt2 p8: fastest" in text
    assert text.count("front: 2 of 4 designs") == 2  # int8 is faster; batch 4 has more tokens/s
    fronts = [line for line in text.splitlines() if line.startswith("    front  ")]
    assert len(fronts) == 4 and all("weight_dtype=int8" in line for line in fronts)
    assert sum("batch=4" in line for line in fronts) == 2


def test_a_sweep_directory_is_locked_by_the_sweep_that_owns_it(tmp_path: Path, capsys) -> None:
    """Two sweeps on one --out would both compute every point: the second is refused."""
    import fcntl
    import os

    from memwall.sweeps import LOCK_NAME

    path, out = _write(tmp_path, TINY), tmp_path / "o"
    out.mkdir()
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"4242")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another sweep, running
        assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert err == (f"memwall: error: --out {out}: another sweep (process 4242) is writing "
                       "there; expected one sweep per directory (wait for it, or use another "
                       "--out)\n")
        assert not list((out / "points").iterdir())
    finally:
        os.close(fd)  # it ended: the lock went with it
    assert cli.main(["sweep", str(path), "--out", str(out), "--workers", "1"]) == 1  # TINY: 2 fail
    assert len(_rows(out)) == 4
