"""Validation against published measurements: `memwall validate`, `memwall.validate()`.

Every row of validation/measured.csv (the published figure, its source, and the memwall run it
maps to; see validation/README.md) is simulated with the bundled hierarchies and compared:
signed error per point, mean absolute percentage error (MAPE) per hardware and overall.

Figures (the `figure` column), each a number from one simulated run:
    gen_len / total_s   generated tokens per second of the whole request, prefill included
                        (how gpt-fast's generate.py counts; TensorRT-LLM's note is ambiguous)
    batch * gen_len / total_s
                        the same over a static batch: output tokens per second of all its
                        sequences (TensorRT-LLM's gptSessionBenchmark "out tok/s")
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
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workloads
from sim import Hierarchy, MemwallError
from sim.errors import cut
from sim.outfile import write_figure

from . import bundled
from . import calibration as calib
from .inputs import as_hierarchy, request
from .progress import Progress
from .simulation import run

FIGURES = ("gen_len / total_s", "batch * gen_len / total_s", "prefill_s", "total_s", "layer_s",
           "decode_s_per_token")
DECODE_SAMPLES = 16  # decode steps each row simulates (sim/sampling.py); shorter runs run all
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
    runtime: str | None = None  # the runtime it ran (a bundled name or a file); None: the
    #                             hierarchy's default
    quant_group: int | None = None  # int4 elements per scale group (AWQ: 128); None: the
    #                                 model's (workloads/model.py, 32)
    quant_group_bits: int | None = None  # bits of scale and zero point per group
    overrides: tuple[str, ...] = ()  # --set texts the row's run needs (its `set` column)


def measured_csv() -> Path:
    """The bundled validation/measured.csv."""
    return bundled.folder("validation") / "measured.csv"


class ValidationError(MemwallError):
    """A measurements file that cannot be used; one line naming file, line, column, value."""


REQUIRED_COLUMNS = ("id", "hardware", "metric", "value", "unit", "source", "workload", "hier",
                    "sim_weight_dtype", "sim_act_dtype", "sim_kv_dtype", "sim_batch",
                    "sim_prompt_len", "sim_gen_len", "tp", "figure")


class _Row:
    """One CSV row and where it is, read one typed value at a time."""

    def __init__(self, path: str, line: int, row: dict[str, str | None]) -> None:
        self.path, self.line, self.row = path, line, row

    def fail(self, key: str, value: str, wanted: str) -> ValidationError:
        shown = f'"{cut(value)}"' if value else "empty"
        return ValidationError(f"{self.path}:{self.line}: {key}: {shown}; expected {wanted}")

    def text(self, key: str) -> str:
        value = (self.row.get(key) or "").strip()
        if not value:
            raise self.fail(key, value, "a value")
        return value

    def number(self, key: str) -> float:
        value = self.text(key)
        try:
            x = float(value)
        except ValueError:
            raise self.fail(key, value, "a number such as 104.9") from None
        if not math.isfinite(x) or x <= 0:
            raise self.fail(key, value, "a positive, finite number")
        return x

    def integer(self, key: str, low: int, optional: bool = False) -> int | None:
        value = (self.row.get(key) or "").strip()
        if optional and not value:
            return None
        try:
            n = int(value)
        except ValueError:
            raise self.fail(key, value, f"a whole number >= {low}") from None
        if not low <= n <= MAX_INT:
            raise self.fail(key, value, f"a whole number from {low} to {MAX_INT}")
        return n


MAX_INT = 1 << 31


def load_points(path: Path | str | None = None) -> list[Point]:
    """The rows of measured.csv as Points; a bad file or row is a ValidationError naming the
    file, line, column and value. A `hier` or `workload` naming a file beside the CSV (as
    `memwall measure` writes them) is that file; anything else is a bundled name, a preset or
    a path as given."""
    path = str(measured_csv() if path is None else path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise ValidationError(f"{path}: cannot read measurements: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ValidationError(f"{path}: not UTF-8 text (byte {e.start}); expected a CSV file "
                              "like validation/measured.csv") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValidationError(f"{path}:1: missing column{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(missing)}; expected the header of "
                                  "validation/measured.csv")
        folder = Path(path).parent
        points = [_point(_Row(path, reader.line_num, row), folder) for row in reader]
    except csv.Error as e:
        raise ValidationError(f"{path}:{reader.line_num}: not CSV: {e}") from None
    if not points:
        raise ValidationError(f"{path}: no measurements after the header; expected a row per "
                              "published figure")
    return points


def _point(r: _Row, folder: Path) -> Point:
    def beside(value: str) -> str:
        return str(folder / value) if (folder / value).is_file() else value

    figure = r.text("figure")
    if figure not in FIGURES:
        raise r.fail("figure", figure, f"one of {', '.join(FIGURES)}")
    return Point(
        id=r.text("id"), hardware=r.text("hardware"), metric=r.text("metric"),
        measured=r.number("value"), unit=r.text("unit"), source=r.text("source"),
        workload=beside(r.text("workload")), hier=beside(r.text("hier")),
        weight_dtype=r.text("sim_weight_dtype"), act_dtype=r.text("sim_act_dtype"),
        kv_dtype=r.text("sim_kv_dtype"), batch=r.integer("sim_batch", 1),
        prompt_len=r.integer("sim_prompt_len", 1), gen_len=r.integer("sim_gen_len", 0),
        tp=r.integer("tp", 1), layers=r.integer("layers", 1, optional=True),
        max_positions=r.integer("max_positions", 1, optional=True), figure=figure,
        runtime=beside(r.row["runtime"].strip()) if (r.row.get("runtime") or "").strip()
        else None,
        quant_group=r.integer("quant_group", 1, optional=True),
        quant_group_bits=r.integer("quant_group_bits", 1, optional=True),
        overrides=tuple(t.strip() for t in (r.row.get("set") or "").split(";") if t.strip()),
    )


def model_of(p: Point) -> workloads.ModelConfig:
    """The model of a point: the preset, or a truncated or position-extended copy of it."""
    model = workloads.load_workload(p.workload)
    changes: dict[str, Any] = {}
    if p.layers is not None:
        changes["n_layers"] = p.layers
    if p.max_positions is not None:
        changes["max_positions"] = p.max_positions
    if p.quant_group is not None:
        changes["quant_group"] = p.quant_group
    if p.quant_group_bits is not None:
        changes["quant_group_bits"] = p.quant_group_bits
    return dataclasses.replace(model, **changes) if changes else model


def predict(p: Point, hier: Hierarchy, engine: str = "des",
            overrides: Sequence[str] = ()) -> float:
    """The simulated figure of point `p` on hierarchy `hier`, in the point's unit, with
    `overrides` ("runtime.PATH=VALUE" texts) and then the row's own (its `set` column)
    applied. Decode runs longer than DECODE_SAMPLES steps are sampled (their estimated error
    is below 1e-5 of the figure)."""
    req = request(model_of(p), hier, batch=p.batch, prompt_len=p.prompt_len,
                  gen_len=p.gen_len, weight_dtype=p.weight_dtype, act_dtype=p.act_dtype,
                  kv_dtype=p.kv_dtype, tp=p.tp, engine=engine, runtime=p.runtime,
                  decode_samples=DECODE_SAMPLES if p.figure != "layer_s" else None,
                  overrides=(*overrides, *p.overrides))
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
    if p.figure == "batch * gen_len / total_s":
        return spec.batch * spec.gen_len / s.total_s
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


def where_of(p: Point, hier: Hierarchy) -> tuple[str, str]:
    """(runtime name, hierarchy name) point `p` runs: its runtime column, else the
    hierarchy's default."""
    return Path(p.runtime).stem if p.runtime else hier.runtime, hier.name


def validate(points: Sequence[Point] | str | os.PathLike[str] | None = None,
             engine: str = "des",
             load: Callable[[str], Hierarchy] | None = None,
             calibration: str | os.PathLike[str] | None = None,
             results: str | os.PathLike[str] | None = None,
             progress: bool = False) -> dict[str, Any]:
    """`memwall.validate`: simulate every point (the bundled measured.csv by default, or a
    CSV path) with the bundled runtime files (in-sample), and each point of a source that
    holds calibration rows again with the figures fitted without that source
    (validation/calibration_results.json; memwall/calibration.py). The per-point table and
    MAPE in-sample and leave-one-source-out, overall, per hierarchy and per runtime."""
    if points is None or isinstance(points, (str, os.PathLike)):
        points = load_points(points)
    load = load or as_hierarchy
    figures = calib.read_figures(calibration)
    fitted = calib.read_results(figures, results)
    used = calib.calibration_rows(figures)
    hiers: dict[str, Hierarchy] = {}
    rows = []
    with Progress(len(points), "point", "validate", show=progress) as done:
        for p in points:
            try:
                if p.hier not in hiers:
                    hiers[p.hier] = load(p.hier)
                hier = hiers[p.hier]
                pred = predict(p, hier, engine)
                loso = pred
                if fitted is not None and p.source in fitted[1]:
                    full, fold = fitted[0], fitted[1][p.source]
                    where = where_of(p, hier)
                    held = calib.overrides_for({**full, **fold}, *where)
                    if held != calib.overrides_for(full, *where):
                        loso = predict(p, hier, engine, held)
            except MemwallError as e:
                raise ValidationError(f"measurement {p.id}: {e}") from None
            rows.append({"id": p.id, "hier": p.hier, "runtime": where_of(p, hier)[0],
                         "metric": p.metric, "unit": p.unit, "predicted": pred,
                         "measured": p.measured, "error": signed_error(pred, p.measured),
                         "predicted_loso": loso, "error_loso": signed_error(loso, p.measured),
                         "role": "calibration" if p.id in used else "validation",
                         "source": p.source})
            done()
    in_sample, loso = _mapes(rows, "error"), _mapes(rows, "error_loso")
    return {"engine": engine, "decode_samples": DECODE_SAMPLES, "points": rows,
            "calibration_rows": sum(r["role"] == "calibration" for r in rows),
            "folds": fitted is not None,
            "mape_in_sample": in_sample, "mape_leave_one_source_out": loso}


def _mapes(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    """MAPE (percent) of `key` errors: overall, then per hierarchy file, then per runtime."""
    out = {"overall": 100 * mape(r[key] for r in rows)}
    for group in ("hier", "runtime"):
        for name in dict.fromkeys(r[group] for r in rows):
            out[name] = 100 * mape(r[key] for r in rows if r[group] == name)
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'point':<52} {'runtime':<17} {'measured':>10} {'unit':<8} {'in-sample':>9} "
             f"{'held out':>9}"]
    for r in result["points"]:
        mark = "*" if r["role"] == "calibration" else " "
        lines.append(f"{r['id'][:51]:<51}{mark} {r['runtime']:<17} {r['measured']:>10.4g} "
                     f"{r['unit']:<8} {100 * r['error']:>+8.1f}% {100 * r['error_loso']:>+8.1f}%")
    n = result["calibration_rows"]
    lines.append(f"* a calibration row ({n} of {len(result['points'])}); held out: predicted "
                 "with the figures fitted without its source's rows"
                 + ("" if result["folds"] else " (no calibration_results.json: = in-sample)"))
    lines.append("")
    lines.append(f"{'MAPE':<40} {'in-sample':>9} {'held out':>9} {'rows':>5}")
    counts: dict[str, int] = {"overall": len(result["points"])}
    for r in result["points"]:
        for group in ("hier", "runtime"):
            counts[r[group]] = counts.get(r[group], 0) + 1
    for name, m in result["mape_in_sample"].items():
        held = result["mape_leave_one_source_out"][name]
        lines.append(f"  {name:<38} {m:>8.1f}% {held:>8.1f}% {counts[name]:>5}")
    return "\n".join(lines)


def parity_plot(result: dict[str, Any], path: str | Path) -> None:
    """Write `parity_figure` to `path` (png, pdf or svg by its extension), atomically."""
    write_figure(parity_figure(result), path,
                 {"Title": "memwall vs published measurements",
                  "Description": f"memwall validate, engine {result['engine']}"})


def parity_figure(result: dict[str, Any]) -> Any:
    """Held-out prediction (each row predicted with figures fitted without its source) against
    measured, log axes, y = x and the +-10% band; one marker per device, hollow for
    calibration rows. A matplotlib Figure, made without pyplot."""
    from matplotlib.figure import Figure

    pts = result["points"]
    lo = min(min(r["predicted_loso"], r["measured"]) for r in pts) / 2
    hi = max(max(r["predicted_loso"], r["measured"]) for r in pts) * 2
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.subplots()
    xs = [lo, hi]
    ax.fill_between(xs, [x * (1 - BAND) for x in xs], [x * (1 + BAND) for x in xs],
                    color="tab:green", alpha=0.15, label="+-10%")
    ax.plot(xs, xs, color="black", lw=1, label="y = x")
    held = result["mape_leave_one_source_out"]
    for i, h in enumerate(sorted({r["hier"] for r in pts})):
        marker, color = "os^Dvph*"[i % 8], f"C{i % 10}"
        for role, face in (("validation", color), ("calibration", "none")):
            sel = [r for r in pts if r["hier"] == h and r["role"] == role]
            if sel:
                label = (f"{h} (held-out MAPE {held[h]:.1f}%)" if role == "validation"
                         else f"{h}, calibration rows")
                ax.scatter([r["measured"] for r in sel], [r["predicted_loso"] for r in sel],
                           marker=marker, facecolors=face, edgecolors=color, label=label,
                           zorder=3)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="measured (s or tokens/s)",
           ylabel="predicted by memwall, held out (same unit)",
           title="memwall vs published measurements: MAPE "
                 f"{result['mape_in_sample']['overall']:.1f}% in-sample, "
                 f"{held['overall']:.1f}% leave-one-source-out")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    return fig
