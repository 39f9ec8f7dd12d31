"""The recorded validation (tests/golden/validation.json, written by
bench/validation_table.py --write) is the model's present answer on every published row: a few
rows recomputed here on both engines must give it exactly, and it must cover the CSV and the
calibration file as they stand. A change that moves a prediction fails here until the record is
rewritten, which puts the moved numbers in the commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memwall import calibration, validation
from memwall.inputs import as_hierarchy

GOLDEN = Path(__file__).parent / "golden" / "validation.json"
RECORD = json.loads(GOLDEN.read_text())


def _cheap_rows_per_runtime() -> list[str]:
    """The cheapest row of each runtime (fewest layers x steps simulated), and of each source
    with calibration rows, so that a held-out prediction is recomputed too."""
    points = validation.load_points()
    hiers = {p.hier: as_hierarchy(p.hier) for p in points}

    def cost(p: validation.Point) -> int:
        layers = p.layers or validation.model_of(p).n_layers
        return layers * (1 + min(p.gen_len, validation.DECODE_SAMPLES))

    best: dict[str, validation.Point] = {}
    for p in points:
        runtime = validation.where_of(p, hiers[p.hier])[0]
        if runtime not in best or cost(p) < cost(best[runtime]):
            best[runtime] = p
    return sorted(p.id for p in best.values())


def test_the_record_covers_the_csv_and_the_calibration_as_they_stand() -> None:
    ids = [p.id for p in validation.load_points()]
    used = calibration.calibration_rows(calibration.read_figures())
    assert RECORD["decode_samples"] == validation.DECODE_SAMPLES
    for engine in ("des", "analytic"):
        points = RECORD["engines"][engine]["points"]
        assert [p["id"] for p in points] == ids
        assert {p["id"] for p in points if p["role"] == "calibration"} == used


def test_the_recorded_mapes_follow_from_the_recorded_points() -> None:
    for engine in ("des", "analytic"):
        rec = RECORD["engines"][engine]
        rows = [dict(p, error=validation.signed_error(p["predicted"], p["measured"]),
                     error_loso=validation.signed_error(p["predicted_loso"], p["measured"]))
                for p in rec["points"]]
        assert rec["mape"]["all"]["in_sample"] == pytest.approx(
            validation._mapes(rows, "error"), rel=1e-12)
        assert rec["mape"]["all"]["held_out"] == pytest.approx(
            validation._mapes(rows, "error_loso"), rel=1e-12)


@pytest.mark.parametrize("engine", ["des", "analytic"])
def test_rows_recomputed_give_the_record(engine: str) -> None:
    pick = _cheap_rows_per_runtime()
    assert len(pick) >= 5  # every bundled runtime that has rows
    points = [p for p in validation.load_points() if p.id in pick]
    got = validation.validate(points, engine=engine)["points"]
    want = {p["id"]: p for p in RECORD["engines"][engine]["points"]}
    for p in got:
        assert p["predicted"] == pytest.approx(want[p["id"]]["predicted"], rel=1e-9), p["id"]
        assert p["predicted_loso"] == pytest.approx(want[p["id"]]["predicted_loso"],
                                                    rel=1e-9), p["id"]
