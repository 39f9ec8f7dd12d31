"""memwall/validation.py: the measured.csv mapping, the error arithmetic, the parity chart,
the command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import memwall
from memwall import bundled, cli
from memwall import validation as validate
from memwall.inputs import as_hierarchy, request

REFERENCE = bundled.CHECKOUT.parent / "shared" / "reference" / "measured.csv"


def spec_of(p: validate.Point):
    """The RunSpec a point runs (request validates lengths, tp, positions, dtypes)."""
    return request(validate.model_of(p), "hbm_accel", batch=p.batch, prompt_len=p.prompt_len,
                   gen_len=p.gen_len, weight_dtype=p.weight_dtype, act_dtype=p.act_dtype,
                   kv_dtype=p.kv_dtype, tp=p.tp).spec


def test_every_row_maps_to_a_runnable_spec() -> None:
    points = validate.load_points()
    assert len(points) == 15
    for p in points:
        spec = spec_of(p)
        hier = as_hierarchy(p.hier)
        assert spec.tp <= (hier.interconnect.max_devices if hier.interconnect else 1)
        assert p.figure in validate.FIGURES and p.measured > 0 and p.source
        if p.figure == "prefill_s":
            assert spec.gen_len == 1, p.id  # time to first token
        if p.metric.startswith("layer_"):
            assert p.figure == "layer_s" and p.layers and p.tp == 4


def test_layer_decode_row_reaches_kv_length_3072() -> None:
    p = next(p for p in validate.load_points() if p.id.endswith("layer-decode-4xa100"))
    spec = spec_of(p)
    assert spec.kv_len(spec.n_phases - 1) == 3072 and spec.batch == 8


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference not present")
def test_every_reference_row_kept_with_its_source() -> None:
    with open(REFERENCE, newline="") as f:
        ref = list(csv.DictReader(f))
    with open(validate.measured_csv(), newline="") as f:
        ours = {r["id"]: r for r in csv.DictReader(f)}
    assert len(ours) == len(ref)
    for r in ref:
        assert all(ours[r["id"]][k] == v for k, v in r.items()), r["id"]


def test_signed_error_and_mape_on_hand_numbers() -> None:
    assert validate.signed_error(110.0, 100.0) == pytest.approx(0.10)
    assert validate.signed_error(0.008, 0.010) == pytest.approx(-0.20)
    assert validate.mape([0.10, -0.20, 0.0, -0.30]) == pytest.approx(0.15)


def test_predict_short_points_analytic() -> None:
    points = {p.id: p for p in validate.load_points()}
    hier = as_hierarchy("a100_80gb.yaml")
    ttft = validate.predict(points["trtllm-gptj-fp16-a100-ttft"], hier, "analytic")
    assert 1e-3 < ttft < 0.1
    layer = validate.predict(points["llmcompass-gpt3-layer-prefill-4xa100"], hier, "analytic")
    assert 1e-3 < layer < 1.0


def _result() -> dict:
    pts = [{"id": "a", "hier": "x.yaml", "metric": "ttft_s", "unit": "s", "predicted": 0.011,
            "measured": 0.010, "error": 0.1, "source": "s"},
           {"id": "b", "hier": "y.yaml", "metric": "decode_tokens_per_s", "unit": "tokens/s",
            "predicted": 90.0, "measured": 100.0, "error": -0.1, "source": "s"}]
    for p in pts:
        p.update(runtime="r", role="validation", predicted_loso=p["predicted"],
                 error_loso=p["error"])
    mapes = {"overall": 10.0, "x.yaml": 10.0, "y.yaml": 10.0, "r": 10.0}
    return {"engine": "des", "points": pts, "calibration_rows": 0, "folds": False,
            "mape_in_sample": mapes, "mape_leave_one_source_out": mapes}


def test_parity_plot_is_a_non_blank_png(tmp_path: Path) -> None:
    import matplotlib.image

    out = tmp_path / "parity.png"
    validate.parity_plot(_result(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 200 and img.std() > 0.01
    assert "+10.0%" in validate.format_table(_result())


def test_validate_command_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open(validate.measured_csv(), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["id"].endswith("fp8-h100-ttft")]
    one = tmp_path / "one.csv"
    with open(one, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot = tmp_path / "p.png"
    assert cli.main(["validate", "--csv", str(one), "--engine", "analytic", "--json", "-",
                     "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    (p,) = data["points"]
    assert p["error"] == pytest.approx((p["predicted"] - p["measured"]) / p["measured"])
    assert data["mape_in_sample"]["overall"] == pytest.approx(100 * abs(p["error"]))
    assert plot.stat().st_size > 1000


def _one_row(tmp_path: Path, **changes: str) -> Path:
    with open(validate.measured_csv(), newline="") as f:
        rows = list(csv.DictReader(f))
    row = {**rows[0], **changes}
    out = tmp_path / "m.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(row)
    return out


@pytest.mark.parametrize("changes, message", [
    ({"value": "10x4"}, 'm.csv:2: value: "10x4"; expected a number such as 104.9'),
    ({"value": "0"}, 'm.csv:2: value: "0"; expected a positive, finite number'),
    ({"value": ""}, "m.csv:2: value: empty; expected a value"),
    ({"value": "nan"}, 'm.csv:2: value: "nan"; expected a positive, finite number'),
    ({"sim_batch": "-3"}, 'm.csv:2: sim_batch: "-3"; expected a whole number from 1'),
    ({"figure": "tokens"}, 'm.csv:2: figure: "tokens"; expected one of gen_len / total_s'),
])
def test_bad_rows_are_one_line_naming_line_column_and_value(tmp_path, capsys, changes,
                                                           message) -> None:
    path = _one_row(tmp_path, **changes)
    assert cli.main(["validate", "--csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / message}" in err and err.count("\n") == 1


def test_empty_binary_and_headerless_files_are_refused(tmp_path, capsys) -> None:
    header = validate.measured_csv().read_text().splitlines()[0]
    for name, data, words in (("h.csv", (header + "\n").encode(), "no measurements after"),
                              ("e.csv", b"", "missing columns id, hardware"),
                              ("b.csv", b"\xff\xfe\x00\x01", "not UTF-8 text")):
        (tmp_path / name).write_bytes(data)
        plot = tmp_path / "p.png"
        assert cli.main(["validate", "--csv", str(tmp_path / name), "--plot", str(plot)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and not plot.exists()


def test_a_row_naming_an_unknown_workload_says_which_row(tmp_path, capsys) -> None:
    path = _one_row(tmp_path, workload="llama9")
    assert cli.main(["validate", "--csv", str(path), "--engine", "analytic"]) == 2
    assert "measurement gptfast-llama2-7b-bf16-a100: unknown workload 'llama9'" in \
        capsys.readouterr().err


def test_files_beside_the_csv_and_the_decode_step_figure(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text((bundled.folder("hierarchies") / "hbm_accel.yaml")
                                        .read_text())
    with open(validate.measured_csv(), newline="") as f:
        row = next(csv.DictReader(f))
    row.update(id="step", hier="mine.yaml", workload="gpt2", sim_prompt_len="64",
               sim_gen_len="2", figure="decode_s_per_token", sim_weight_dtype="bf16")
    with open(tmp_path / "rows.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    (p,) = validate.load_points(tmp_path / "rows.csv")
    assert p.hier == str(tmp_path / "mine.yaml") and p.workload == "gpt2"  # no file gpt2 there
    want = memwall.simulate("gpt2", "hbm_accel", prompt_len=64, gen_len=2).decode_s_per_token
    assert validate.predict(p, as_hierarchy(p.hier)) == pytest.approx(want, rel=1e-12)
