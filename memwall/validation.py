"""Validation against published measurements: `memwall validate`, `memwall.validate()`.

Every row of validation/measured.csv (the published figure, its source, and the memwall run it
maps to; see validation/README.md) is simulated with the bundled hierarchies and compared:
signed error per point, mean absolute percentage error (MAPE) per hardware and overall.

Figures (the `figure` column), each a number from one simulated run:
    gen_len / total_s   generated tokens per second of the whole request, prefill included
                        (how gpt-fast's generate.py counts; TensorRT-LLM's note is ambiguous)
    prefill_s           time to first token: the prefill of a gen_len = 1 run
    total_s             the whole request, prefill plus gen_len - 1 decode steps
    decode_s_per_token  one decode step (the mean over decode steps; `memwall measure` times
                        one step with prompt_len positions cached: gen_len = 2)
    layer_s             one Transformer layer: the op records of layer n_layers // 2 in the
                        last step (the decode step, or the prefill when gen_len = 0), summed
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workloads
from sim import Hierarchy
from sim.outfile import write_figure

from . import bundled
from .inputs import as_hierarchy, request
from .simulation import run

FIGURES = ("gen_len / total_s", "prefill_s", "total_s", "layer_s", "decode_s_per_token")
BAND = 0.10  # the +-10% band of the parity chart and the MAPE goal


@dataclass(frozen=True)
class Point:
    """One published measurement and the memwall run it is compared with."""

    id: str
    hardware: str  # as published
    metric: str  # decode_tokens_per_s, ttft_s, request_s, layer_decode_s, layer_prefill_s
    measured: float  # in `unit`
    unit: str  # tokens/s or s
    source: str
    workload: str  # preset name
    hier: str  # bundled hierarchy file
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    batch: int  # sequences
    prompt_len: int  # tokens
    gen_len: int  # tokens
    tp: int  # devices
    layers: int | None  # n_layers of a truncated copy of the model (layer_s rows), else None
    max_positions: int | None  # learned position table extended to this, else None
    figure: str  # one of FIGURES


def measured_csv() -> Path:
    """The bundled validation/measured.csv."""
    return bundled.folder("validation") / "measured.csv"


def load_points(path: Path | str | None = None) -> list[Point]:
    """The rows of measured.csv as Points; a bad row is a ValueError naming file, line, key.
    A `hier` or `workload` naming a file beside the CSV (as `memwall measure` writes them)
    is that file; anything else is a bundled name, a preset or a path as given."""
    path = measured_csv() if path is None else path
    folder = Path(path).parent

    def beside(value: str) -> str:
        return str(folder / value) if (folder / value).is_file() else value

    points = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            def need(key: str, row: dict[str, str] = row, line: int = line) -> str:
                value = (row.get(key) or "").strip()
                if not value:
                    raise ValueError(f"{path}:{line}: {key}: empty; expected a value")
                return value

            def opt_int(key: str, row: dict[str, str] = row) -> int | None:
                value = (row.get(key) or "").strip()
                return int(value) if value else None

            figure = need("figure")
            if figure not in FIGURES:
                raise ValueError(f"{path}:{line}: figure: {figure!r}; expected one of "
                                 f"{', '.join(FIGURES)}")
            points.append(Point(
                id=need("id"), hardware=need("hardware"), metric=need("metric"),
                measured=float(need("value")), unit=need("unit"), source=need("source"),
                workload=beside(need("workload")), hier=beside(need("hier")),
                weight_dtype=need("sim_weight_dtype"), act_dtype=need("sim_act_dtype"),
                kv_dtype=need("sim_kv_dtype"), batch=int(need("sim_batch")),
                prompt_len=int(need("sim_prompt_len")), gen_len=int(need("sim_gen_len")),
                tp=int(need("tp")), layers=opt_int("layers"),
                max_positions=opt_int("max_positions"), figure=figure,
            ))
    return points


def model_of(p: Point) -> workloads.ModelConfig:
    """The model of a point: the preset, or a truncated or position-extended copy of it."""
    model = workloads.load_workload(p.workload)
    changes: dict[str, Any] = {}
    if p.layers is not None:
        changes["n_layers"] = p.layers
    if p.max_positions is not None:
        changes["max_positions"] = p.max_positions
    return dataclasses.replace(model, **changes) if changes else model


def predict(p: Point, hier: Hierarchy, engine: str = "des") -> float:
    """The simulated figure of point `p` on hierarchy `hier`, in the point's unit."""
    req = request(model_of(p), hier, batch=p.batch, prompt_len=p.prompt_len,
                  gen_len=p.gen_len, weight_dtype=p.weight_dtype, act_dtype=p.act_dtype,
                  kv_dtype=p.kv_dtype, tp=p.tp, engine=engine)
    spec = req.spec
    records: list[Any] = []
    layer = spec.model.n_layers // 2
    last = spec.n_phases - 1

    def keep(r: Any) -> None:
        if r.layer == layer and r.step == last:
            records.append(r)

    s = run(req, sinks=(keep,) if p.figure == "layer_s" else ())
    if p.figure == "gen_len / total_s":
        return spec.gen_len / s.total_s
    if p.figure == "prefill_s":
        return s.prefill_s
    if p.figure == "total_s":
        return s.total_s
    if p.figure == "decode_s_per_token":
        if s.decode_s_per_token is None:
            raise ValueError(f"point {p.id}: decode_s_per_token of a run without a decode "
                             "step; expected gen_len >= 2")
        return s.decode_s_per_token
    return sum(r.end_s - r.start_s for r in records)


def signed_error(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured: +0.1 is a 10% over-prediction."""
    return (predicted - measured) / measured


def mape(errors: Iterable[float]) -> float:
    """Mean absolute percentage error, as a fraction, of signed errors."""
    e = [abs(x) for x in errors]
    return sum(e) / len(e) if e else math.nan


def validate(points: Sequence[Point] | str | os.PathLike[str] | None = None,
             engine: str = "des",
             load: Callable[[str], Hierarchy] | None = None) -> dict[str, Any]:
    """`memwall.validate`: simulate every point (the bundled measured.csv by default, or a
    CSV path); the per-point table and MAPE per hierarchy and overall."""
    if points is None or isinstance(points, (str, os.PathLike)):
        points = load_points(points)
    load = load or as_hierarchy
    hiers: dict[str, Hierarchy] = {}
    rows = []
    for p in points:
        if p.hier not in hiers:
            hiers[p.hier] = load(p.hier)
        pred = predict(p, hiers[p.hier], engine)
        rows.append({"id": p.id, "hier": p.hier, "metric": p.metric, "unit": p.unit,
                     "predicted": pred, "measured": p.measured,
                     "error": signed_error(pred, p.measured), "source": p.source})
    by_hier: dict[str, list[float]] = {}
    for r in rows:
        by_hier.setdefault(r["hier"], []).append(r["error"])
    return {"engine": engine, "points": rows,
            "mape_by_hierarchy": {h: mape(e) for h, e in by_hier.items()},
            "mape": mape(r["error"] for r in rows)}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'point':<40} {'predicted':>11} {'measured':>11} {'unit':<9} {'error':>8}"]
    for r in result["points"]:
        lines.append(f"{r['id']:<40} {r['predicted']:>11.4g} {r['measured']:>11.4g} "
                     f"{r['unit']:<9} {100 * r['error']:>+7.1f}%")
    lines.append("")
    for h, m in result["mape_by_hierarchy"].items():
        lines.append(f"MAPE {h:<35} {100 * m:6.1f}%")
    lines.append(f"MAPE {'overall':<35} {100 * result['mape']:6.1f}%")
    return "\n".join(lines)


def parity_plot(result: dict[str, Any], path: str | Path) -> None:
    """Write `parity_figure` to `path` (png, pdf or svg by its extension), atomically."""
    write_figure(parity_figure(result), path,
                 {"Title": "memwall vs published measurements",
                  "Description": f"memwall validate, engine {result['engine']}"})


def parity_figure(result: dict[str, Any]) -> Any:
    """Predicted against measured, log axes, y = x and the +-10% band; one marker per device.
    A matplotlib Figure, made without pyplot."""
    from matplotlib.figure import Figure

    pts = result["points"]
    lo = min(min(r["predicted"], r["measured"]) for r in pts) / 2
    hi = max(max(r["predicted"], r["measured"]) for r in pts) * 2
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.subplots()
    xs = [lo, hi]
    ax.fill_between(xs, [x * (1 - BAND) for x in xs], [x * (1 + BAND) for x in xs],
                    color="tab:green", alpha=0.15, label="+-10%")
    ax.plot(xs, xs, color="black", lw=1, label="y = x")
    for h, marker in zip(sorted({r["hier"] for r in pts}), "os^Dv", strict=False):
        sel = [r for r in pts if r["hier"] == h]
        ax.scatter([r["measured"] for r in sel], [r["predicted"] for r in sel], marker=marker,
                   label=f"{h} (MAPE {100 * result['mape_by_hierarchy'][h]:.1f}%)", zorder=3)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="measured (s or tokens/s)", ylabel="predicted by memwall (same unit)",
           title=f"memwall vs published measurements, MAPE {100 * result['mape']:.1f}%")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig
