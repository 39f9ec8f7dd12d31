"""memwall measure end to end on a synthetic GPU (tests/fake_gpu.py): the hierarchy files
carry the planted figures within the stated tolerances and say what measured each one;
measurements.csv, models.csv and profile.csv are well formed; the budget stops stages and
still leaves files; the command line explains a missing PyTorch or GPU in one line."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import pytest
from fake_gpu import FakeGPU, MiB

import memwall
from memwall import cli, validation
from memwall.measure import MeasureError, calibration, read_csv
from memwall.measure import session as measure_session
from memwall.measure.samples import COLUMNS
from memwall.measure.writer import MODEL_COLUMNS

FIGURE_KEYS = {"clock", "vector", "launch", "units", "matmul_tile", "capacity", "bandwidth",
               "latency", "efficiency", "bf16", "fp16", "fp8", "fp32"}
SOURCES = ("measured", "datasheet", "driver-reported", "fitted", "estimate")


def measure(tmp_path: Path, name: str = "Synthetic GPU", **kw) -> memwall.measure.Measurement:
    g = FakeGPU(name=name, seed=kw.pop("seed", 0))
    return memwall.measure.run(tmp_path, timer=g, clock=g.now, budget_s=kw.pop("budget_s", 1e4),
                               **kw)


def level(h, name):
    return next(lv for lv in h.levels if lv.name == name)


def test_an_unknown_device_gets_the_planted_figures(tmp_path: Path) -> None:
    m = measure(tmp_path)
    p = FakeGPU().p
    h = memwall.hierarchy(str(tmp_path / "hierarchy.yaml"))
    assert [lv.name for lv in h.levels] == ["l1", "l2", "hbm"]  # no datasheet: no registers
    l1, l2, hbm = (level(h, n) for n in ("l1", "l2", "hbm"))
    assert l2.capacity_bytes == pytest.approx(p.l2_bytes, rel=0.10) and l2.policy == "lru"
    assert l2.bandwidth_bytes_per_s == pytest.approx(p.l2_bytes_per_s, rel=0.05)
    assert hbm.bandwidth_bytes_per_s == pytest.approx(p.hbm_bytes_per_s["read"], rel=0.05)
    assert (l2.efficiency, hbm.efficiency, hbm.capacity_bytes) == (1.0, 1.0, 80 * 10**9)
    assert l1.bandwidth_bytes_per_s == pytest.approx(p.l1_bytes_per_s, rel=0.05)
    assert l1.capacity_bytes == 228 * 1024 * 132  # driver-reported shared memory x SMs
    for lv in (l1, l2, hbm):
        assert lv.latency_s == pytest.approx(p.latency_s[lv.name], rel=0.10), lv.name
    c = h.compute
    eager = memwall.runtime(None, h)  # the file's default: runtime_eager.yaml beside it
    graphs = memwall.runtime(str(tmp_path / "runtime_graphs.yaml"))
    assert eager.name == "runtime_eager"
    assert eager.launch_s == pytest.approx(p.launch_s[False], rel=0.05)
    assert graphs.launch_s == pytest.approx(p.launch_s[True], rel=0.05)
    for d, peak in p.peaks.items():
        assert c.peak_flops_per_s[d] == pytest.approx(peak, rel=0.03), d
    assert eager.matmul_efficiency == 1.0 and c.units == 132
    assert eager.matmul_tile[0] * eager.matmul_tile[1] == 128 * 128
    assert graphs.matmul_tile == eager.matmul_tile  # only the launch differs
    assert c.vector_flops_per_s == pytest.approx(p.vector_flops_per_s, rel=0.05)
    assert eager.vector_efficiency == 1.0 and eager.fusion == "none" and c.clock_hz == 1.755e9
    assert h.placement.weights == ("hbm",) and h.placement.activations == ("l2", "hbm")
    assert m.calibration.notes and "registers" in m.calibration.notes[0]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "hierarchy.yaml", "measurements.csv", "runtime_eager.yaml", "runtime_graphs.yaml"]


def test_every_figure_says_what_measured_it(tmp_path: Path) -> None:
    measure(tmp_path / "a")
    measure(tmp_path / "b", name="NVIDIA H200")
    for path in [*(tmp_path / "a").glob("*.yaml"), *(tmp_path / "b").glob("*.yaml")]:
        figures = 0
        for line in path.read_text().splitlines():
            key = re.match(r"\s*(?:- )?([a-z0-9_]+): (\S.*)", line)
            if not key or key[1] in ("schema_version", "description", "name"):
                continue
            assert " # " in line, (path.name, line)
            if key[1] in FIGURE_KEYS:
                figures += 1
                comment = line.split(" # ", 1)[1]
                assert comment.startswith(SOURCES), (path.name, line)
                if comment.startswith("datasheet"):
                    assert "hierarchies/h200.yaml" in comment, line
        known = "b" in path.parent.name  # an H200: its datasheet adds registers and more
        want = {"hierarchy.yaml": 20 if known else 16,
                "runtime_eager.yaml": 3 if known else 2, "runtime_graphs.yaml": 3 if known else 2}
        assert figures == want[path.name], (path, figures)


def test_a_known_device_gets_its_datasheet_peaks(tmp_path: Path) -> None:
    measure(tmp_path, name="NVIDIA H200")
    p = FakeGPU().p
    h = memwall.hierarchy(str(tmp_path / "hierarchy.yaml"))
    sheet = memwall.hierarchy("h200.yaml")
    hbm = level(h, "hbm")
    assert hbm.bandwidth_bytes_per_s == level(sheet, "hbm").bandwidth_bytes_per_s == 4.8e12
    assert hbm.efficiency == pytest.approx(p.hbm_bytes_per_s["read"] / 4.8e12, rel=0.05)
    assert hbm.sustained_bytes_per_s == pytest.approx(p.hbm_bytes_per_s["read"], rel=0.05)
    regs = level(h, "registers")
    assert regs.capacity_bytes == 65536 * 4 * 132  # driver-reported registers x SMs
    assert regs.bandwidth_bytes_per_s == level(sheet, "registers").bandwidth_bytes_per_s
    assert level(h, "l1").capacity_bytes == level(sheet, "l1").capacity_bytes
    c = h.compute
    assert c.vector_flops_per_s == sheet.compute.vector_flops_per_s
    eff = memwall.runtime(None, h).vector_efficiency
    assert eff == pytest.approx(p.vector_flops_per_s / 66.9e12, rel=0.05)
    assert c.clock_hz == sheet.compute.clock_hz
    assert c.peak_flops_per_s["bf16"] == pytest.approx(p.peaks["bf16"], rel=0.03)  # measured
    text = (tmp_path / "hierarchy.yaml").read_text()
    assert "0.73 of the datasheet's 989.4 TFLOP/s" in text


def test_datasheets_by_exact_driver_name() -> None:
    for name, file in calibration.KNOWN.items():
        assert memwall.hierarchy(file).levels  # a bundled file
        assert calibration.for_device(name).file == file
    assert calibration.for_device("NVIDIA H200 NVL") is None  # another part: no guess
    assert calibration.for_device("Synthetic GPU") is None


def test_measurements_csv_round_trips(tmp_path: Path) -> None:
    m = measure(tmp_path)
    with open(tmp_path / "measurements.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(m.samples)
    back = read_csv(str(tmp_path / "measurements.csv"))
    for a, b in zip(back, m.samples, strict=True):
        assert (a.bench, a.variant, a.dtype, a.working_set_bytes, a.m, a.n, a.k) == \
               (b.bench, b.variant, b.dtype, b.working_set_bytes, b.m, b.n, b.k)
        assert a.stats.median == pytest.approx(b.stats.median, rel=1e-5)
        assert a.rate == pytest.approx(b.rate, rel=1e-4)
    benches = {s.bench for s in back}
    assert benches == {"launch", "stream", "l1", "vector", "chase", "gemm"}
    reads = [s for s in back if s.bench == "stream" and s.variant == "read"]
    assert len(reads) == 25 + 4  # the sweep and the points refined around the knee
    assert m.calibration.knee.below < 40 * MiB * 1.1 and m.calibration.knee.above > 40 * MiB


def test_models_csv_is_validation_input(tmp_path: Path) -> None:
    m = measure(tmp_path, models=["gpt2"])
    names = {f.name for f in tmp_path.iterdir()}
    assert {"models.csv", "profile.csv", "l2_resident.json"} <= names
    with open(tmp_path / "models.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(validation.measured_csv(), newline="") as f:
        assert tuple(next(csv.reader(f))) == MODEL_COLUMNS == tuple(rows[0])
    points = validation.load_points(tmp_path / "models.csv")
    assert len(points) == len(rows) == len({p.id for p in points})
    assert not m.skipped  # 80 GB fits every run of these three
    assert len(points) == 3 * 2 * 9 + 6 + 6 + 4  # 3 models' decodes; prefills (gpt2: to 1024)
    assert {Path(p.hier).name for p in points} == {"hierarchy.yaml"}
    assert {Path(p.runtime).name for p in points} == {"runtime_eager.yaml", "runtime_graphs.yaml"}
    assert all(Path(p.hier).parent == tmp_path for p in points)  # found beside the CSV
    resident = [p for p in points if p.workload.endswith("l2_resident.json")]
    assert Path(resident[0].workload) == tmp_path / "l2_resident.json"
    assert {p.layers for p in resident} == {None, _twin(tmp_path)}
    gpt2 = [p for p in points if p.workload == "gpt2"]
    assert {p.figure for p in gpt2} == {"decode_s_per_token", "prefill_s"}
    kv4096 = next(p for p in gpt2 if p.prompt_len == 4096)
    assert kv4096.max_positions == 4097 and kv4096.gen_len == 2  # one step, 4096 cached
    few = [p for p in points if p.batch == 1 and p.prompt_len == 128][:4]
    result = validation.validate(few, engine="analytic")
    assert len(result["points"]) == 4
    assert all(r["predicted"] > 0 and abs(r["error"]) < 10 for r in result["points"])
    with open(tmp_path / "profile.csv", newline="") as f:
        prof = list(csv.DictReader(f))
    assert prof[0]["kernel"] == "gemv_bf16"  # the most time first
    assert sum(float(r["share"]) for r in prof) == pytest.approx(1.0, abs=1e-3)


def _twin(folder: Path) -> int:
    reads = [s for s in read_csv(str(folder / "measurements.csv")) if s.bench == "decode"]
    layers = {int(s.model.rsplit("-", 1)[1][:-1]) for s in reads if s.model.endswith("l")}
    (n,) = layers
    return n


def test_the_budget_stops_stages_and_still_writes_files(tmp_path: Path) -> None:
    m = measure(tmp_path / "short", budget_s=2.0)  # about a quarter of the cases
    stopped = [s for s, p in m.progress.items() if p.stopped]
    assert "gemm" in stopped and "stream" in stopped
    assert (tmp_path / "short" / "hierarchy.yaml").is_file()
    assert "budget: gemm stopped after" in m.summary()
    h = memwall.hierarchy(str(tmp_path / "short" / "hierarchy.yaml"))
    assert h.compute.peak_flops_per_s["bf16"] == pytest.approx(720e12, rel=0.05)
    with pytest.raises(MeasureError, match=r"for the hbm latency; the budget stopped stream, "
                       r"chase, gemm \(raise --budget-s\); wrote .*measurements.csv"):
        measure(tmp_path / "none", budget_s=0.3)
    assert (tmp_path / "none" / "measurements.csv").is_file()  # the raw figures stay


def test_bad_arguments_are_refused_before_any_timing(tmp_path: Path) -> None:
    g = FakeGPU()
    with pytest.raises(MeasureError, match="--models bert-base: an encoder"):
        memwall.measure.run(tmp_path, models=["bert-base"], timer=g)
    with pytest.raises(memwall.MemwallError, match="unknown workload 'gpt5'"):
        memwall.measure.run(tmp_path, models=["gpt5"], timer=g)
    with pytest.raises(MeasureError, match="--budget-s 0"):
        memwall.measure.run(tmp_path, budget_s=0, timer=g)
    (tmp_path / "f").write_text("")
    with pytest.raises(MeasureError, match="not a directory"):
        memwall.measure.run(tmp_path / "f", timer=g)
    assert g.calls == []


def test_the_command_without_torch_says_what_to_install(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert cli.main(["measure", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["memwall: error: memwall measure needs PyTorch with CUDA: "
                   "pip install 'memwall-sim[gpu]'"]


def test_the_command_without_a_gpu_says_so(tmp_path, monkeypatch, capsys) -> None:
    fake = types.SimpleNamespace(__version__="2.13.0+cpu",
                                 cuda=types.SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert cli.main(["measure", "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("memwall: error: memwall measure: PyTorch 2.13.0+cpu sees no CUDA")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_command_on_a_synthetic_gpu(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(measure_session, "cuda_timer", lambda: FakeGPU(name="NVIDIA H200"))
    assert cli.main(["measure", "--out", str(tmp_path / "m"), "--models", "gpt2",
                     "--budget-s", "600"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("memwall measure: NVIDIA H200, 132 SMs")
    assert "  hbm " in out and "GEMM peaks fp32" in out and "models.csv" in out
    assert cli.main(["validate", "--csv", str(tmp_path / "m" / "models.csv"), "--engine",
                     "analytic", "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    overall = next(x for x in out.splitlines() if x.startswith("  overall "))
    v = json.loads((tmp_path / "v.json").read_text())
    assert f"{v['mape_in_sample']['overall']:.1f}%" in overall
    with pytest.raises(SystemExit):
        cli.main(["measure", "-h"])
    assert "--budget-s" in capsys.readouterr().out


class FailingGPU(FakeGPU):
    """fp16 GEMMs raise (a library without a kernel for them, say)."""

    def gemm(self, dtype, m, n, k):
        if dtype == "fp16":
            raise RuntimeError(f"no fp16 kernel for {m}x{n}x{k}\nsecond line")
        return super().gemm(dtype, m, n, k)


def test_a_failing_case_is_logged_and_the_run_goes_on(tmp_path: Path) -> None:
    g = FailingGPU(name="NVIDIA H200")
    lines: list[str] = []
    m = memwall.measure.run(tmp_path, timer=g, clock=g.now, budget_s=1e4, log=lines.append)
    h = memwall.hierarchy(str(tmp_path / "hierarchy.yaml"))
    assert "fp16" not in h.compute.peak_flops_per_s and "bf16" in h.compute.peak_flops_per_s
    assert m.errors == ["gemm: RuntimeError: no fp16 kernel for 4096x50257x768"]  # once
    assert sum("no fp16 kernel" in line for line in lines) == 1  # logged once
    log = (tmp_path / "errors.log").read_text()
    fp16_cases = sum(1 for c in g.calls if c == "gemm bf16")  # as many as bf16 ran
    assert log.startswith(f"{fp16_cases} x gemm: RuntimeError") and "Traceback" in log
    assert "# Not measured: fp16 peak (the GEMM sweep could not run it here)." in \
        (tmp_path / "hierarchy.yaml").read_text()
    assert any(line.startswith("  gemm: ") and " cases in " in line for line in lines)
