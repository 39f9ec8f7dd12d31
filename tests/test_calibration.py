"""memwall/calibration.py: the calibration file, the fit, the leave-one-source-out folds and
writing fitted values back into runtime files (with made-up predictions, so the numbers
are known)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from memwall import calibration as calib
from memwall.validation import load_points, measured_csv

FILE = """figures:
  - name: launch
    targets: [rt:kernels.launch]
    kind: time
    bounds: ["1 us", "100 us"]
    prior: "10 us"
    rows: [a, b]
  - name: gemm
    targets: [rt:devices.dev.efficiency.matmul, other:devices.dev.efficiency.matmul]
    kind: fraction
    bounds: [0.2, 1]
    prior: 0.8
    rows: [c]
"""


@dataclass(frozen=True)
class P:
    id: str
    source: str
    measured: float
    runtime: str = "rt"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "calibration.yaml"
    p.write_text(text)
    return p


def fake_predict(p: P, overrides: tuple[str, ...]) -> float:
    """A run whose time is 1000 launches plus 1 / matmul efficiency seconds."""
    values = dict(o.removeprefix("runtime.").split("=") for o in overrides)
    launch = float(values.get("kernels.launch", "10 us").split()[0]) * 1e-6
    eff = float(values.get("devices.dev.efficiency.matmul", "0.8"))
    return 1000 * launch + (1 / eff if p.id == "c" else 0.0)


def test_the_fit_finds_the_values_that_made_the_rows(tmp_path):
    figures = calib.read_figures(write(tmp_path, FILE))
    points = {"a": P("a", "s1", 0.020), "b": P("b", "s2", 0.020),
              "c": P("c", "s2", 0.020 + 1 / 0.5)}
    fitter = calib.Fitter(figures, points, fake_predict, lambda p: (p.runtime, "dev"))
    full = fitter.fit()
    launch, gemm = figures
    assert full[launch] == pytest.approx(20e-6, rel=2e-3)
    assert full[gemm] == pytest.approx(0.5, rel=2e-3)
    folds = fitter.folds(full)
    # without s1, launch is fitted on b alone (the same value); without s2 the gemm figure
    # has no row left and takes its prior, launch keeps row a
    assert set(folds) == {"s1", "s2"}
    assert folds["s1"] == {launch: pytest.approx(20e-6, rel=2e-3)}
    assert folds["s2"][gemm] == 0.8 and folds["s2"][launch] == pytest.approx(20e-6, rel=2e-3)


def test_a_figure_sets_its_keys_only_where_they_apply(tmp_path):
    _, gemm = calib.read_figures(write(tmp_path, FILE))
    assert gemm.keys("rt", "dev") == ["devices.dev.efficiency.matmul"]
    assert gemm.keys("rt", "elsewhere") == [] and gemm.keys("third", "dev") == []
    assert calib.overrides_for({gemm: 0.5}, "other", "dev") == (
        "runtime.devices.dev.efficiency.matmul=0.5",)


def test_golden_section_finds_a_minimum_on_a_log_scale():
    x = calib._golden(lambda v: abs(math.log(v / 3e-6)), 1e-6, 1e-4, log=True)
    assert x == pytest.approx(3e-6, rel=1e-3)


@pytest.mark.parametrize("change, message", [
    (("prior: 0.8", "prior: 1.5"), "figures[1].prior: 1.5 is not a fraction"),
    (("prior: 0.8", "prior: 0.1"), "is not inside positive bounds"),
    (("[rt:kernels.launch]", "[kernels.launch]"), "has no runtime:path"),
    (("rows: [c]", "rows: []"), "figures[1].rows"),
    (("name: gemm", "name: launch"), "launch twice"),
    (("kind: time", "kind: speed"), "figures[0].kind"),
])
def test_bad_calibration_files_are_one_line(tmp_path, change, message):
    with pytest.raises(calib.CalibrationError) as e:
        calib.read_figures(write(tmp_path, FILE.replace(*change, 1)))
    assert message in str(e.value) and "calibration.yaml:" in str(e.value)
    assert "\n" not in str(e.value)


def test_rows_must_exist_and_run_a_target(tmp_path):
    figures = calib.read_figures(write(tmp_path, FILE))
    points = {"a": P("a", "s", 1.0), "b": P("b", "s", 1.0)}
    with pytest.raises(calib.CalibrationError, match="rows c are not in the measurements"):
        calib.Fitter(figures, points, fake_predict, lambda p: (p.runtime, "dev"))
    points["c"] = P("c", "s", 1.0, runtime="third")
    with pytest.raises(calib.CalibrationError, match="rows c run no target of gemm"):
        calib.Fitter(figures, points, fake_predict, lambda p: (p.runtime, "dev"))


RUNTIME = """schema_version: 1
kernels:
  launch: 2.5 us             # prior: a microbenchmark
devices:
  dev:
    efficiency:
      matmul: 0.87           # MAMF
  flow: {efficiency: {matmul: 0.5}}
"""


def test_write_back_replaces_the_value_on_its_line_and_says_where_it_came_from(tmp_path):
    launch, gemm = calib.read_figures(write(tmp_path, FILE))
    text = calib.write_back(RUNTIME, launch, "kernels.launch", 16.3e-6, "rt.yaml")
    text = calib.write_back(text, gemm, "devices.dev.efficiency.matmul", 0.7215, "rt.yaml")
    lines = text.split("\n")
    assert lines[2].startswith("  launch: 16.3 us") and "# fitted: launch, 2 rows" in lines[2]
    assert "prior 10 us" in lines[2]
    assert lines[6].startswith("      matmul: 0.722 ") and "fitted: gemm, 1 row " in lines[6]
    assert [x for i, x in enumerate(lines) if i not in (2, 6)] == [
        x for i, x in enumerate(RUNTIME.split("\n")) if i not in (2, 6)]
    with pytest.raises(calib.CalibrationError, match="not on a line of its own"):
        calib.write_back(RUNTIME, gemm, "devices.flow.efficiency.matmul", 0.5, "rt.yaml")
    with pytest.raises(calib.CalibrationError, match="not in the file"):
        calib.write_back(RUNTIME, gemm, "efficiency.vector", 0.5, "rt.yaml")


def test_the_bundled_calibration_names_rows_of_measured_csv_and_results_match_it():
    figures = calib.read_figures()
    ids = {p.id for p in load_points(measured_csv())}
    used = calib.calibration_rows(figures)
    assert used <= ids and len(used) < len(ids) / 4  # most rows are never fitted
    full, folds = calib.read_results(figures)
    for f in figures:  # the runtime files carry the fitted values
        for runtime, key in f.targets:
            text = (calib.bundled.folder("runtimes") / f"{runtime}.yaml").read_text()
            assert f"{key.split('.')[-1]}: {f.text(full[f])}" in text, (f.name, runtime)
    sources = {p.source for p in load_points() if p.id in used}
    assert set(folds) == sources
