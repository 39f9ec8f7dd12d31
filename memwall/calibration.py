"""Calibration kept apart from validation: declared runtime figures fitted on declared rows.

`validation/calibration.yaml` lists each figure that is fitted, in fitting order:

    figures:
      - runtime: tensorrt-llm       # a bundled runtime
        key: kernels.launch         # a path in its file (runtimes/README.md)
        device: h100_sxm            # optional: only for runs on this hierarchy (a devices entry)
        kind: time                  # time or fraction
        bounds: ["1 us", "20 us"]   # the search range
        prior: "4 us"               # the figure when none of its rows may be used
        rows: [ft-gpt3-350m-..., ...]  # ids in validation/measured.csv, its calibration rows

A figure is fitted by golden-section search over its bounds (on a log scale for times),
minimising the mean absolute log error of its rows, with the figures before it at their
fitted values; two passes over all figures let them settle together. Nothing else is fitted:
every other figure in the hardware and runtime files is a datasheet, microbenchmark or
estimate figure, and says so. Leave-one-source-out: for each source of measured.csv, every
figure is fitted again without that source's rows (a figure left with no row takes its
prior), and that source's rows are predicted with those figures; the rows a figure was
fitted on are predicted in-sample, every other row never was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import MemwallError
from sim.units import parse_quantity
from sim.yamlfile import FileError, Node, as_choice, as_mapping, as_text, compose, value_error

from . import bundled

KINDS = ("time", "fraction")
GOLDEN = (math.sqrt(5) - 1) / 2
SEARCH_STEPS = 14  # golden-section steps: the bracket shrinks to 0.618^14 = 0.1% of itself
PASSES = 2


class CalibrationError(MemwallError):
    """A calibration file that cannot be used; one line naming file, line, key and value."""


@dataclass(frozen=True)
class Figure:
    """One fitted figure: a key of a runtime file, on one device or on all."""

    runtime: str
    key: str  # dotted path in the runtime file, "kernels.launch"
    kind: str  # time | fraction
    low: float  # SI
    high: float
    prior: float
    rows: tuple[str, ...]  # measured.csv ids it is fitted on
    device: str | None = None  # only runs on this hierarchy
    where: str = ""

    @property
    def name(self) -> str:
        on = f"@{self.device}" if self.device else ""
        return f"{self.runtime}:{self.key}{on}"

    def text(self, value: float) -> str:
        """The value as the runtime file writes it."""
        if self.kind == "fraction":
            return f"{value:.4g}"
        return f"{value * 1e6:.4g} us"

    def applies(self, runtime: str, device: str) -> bool:
        return runtime == self.runtime and (self.device is None or device == self.device)


_FILE = {"figures": (True, "a list of figures, each with runtime, key, kind, bounds, prior, rows")}
_FIGURE = {
    "runtime": (True, "a bundled runtime such as tensorrt-llm"),
    "key": (True, "a path in the runtime file such as kernels.launch"),
    "device": (False, "a hierarchy name such as h100_sxm"),
    "kind": (True, f"one of {', '.join(KINDS)}"),
    "bounds": (True, 'two values such as ["1 us", "20 us"]'),
    "prior": (True, 'a value such as "4 us" or 0.8'),
    "rows": (True, "a list of ids of validation/measured.csv"),
}


def calibration_file() -> Path:
    return bundled.folder("validation") / "calibration.yaml"


def read_figures(path: Path | str | None = None) -> list[Figure]:
    """The figures of a calibration file, validated (CalibrationError, one line)."""
    path = str(calibration_file() if path is None else path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: cannot read calibration file: {e}") from None
    try:
        root = compose(text, lambda line: f"{path}:{line}", "")
        if root is None:
            raise CalibrationError(f"{path}:1: empty file; expected figures")
        top = as_mapping(root, "", _FILE)
        items = top["figures"].value
        if not isinstance(items, list) or not items:
            raise value_error(top["figures"], "figures", "is not a non-empty list; expected "
                              + _FILE["figures"][1])
        return [_figure(item, i) for i, item in enumerate(items)]
    except FileError as e:
        raise CalibrationError(str(e)) from None


def _figure(item: Node, i: int) -> Figure:
    label = f"figures[{i}]"
    f = as_mapping(item, label, _FIGURE)
    kind = as_choice(f["kind"], f"{label}.kind", KINDS, default="time")
    bounds = f["bounds"].value
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise value_error(f["bounds"], f"{label}.bounds", f"is not two values; expected "
                          f"{_FIGURE['bounds'][1]}")
    low, high = (_value(b, kind, f"{label}.bounds") for b in bounds)
    prior = _value(f["prior"], kind, f"{label}.prior")
    if not 0 < low < high or not low <= prior <= high:
        raise value_error(f["prior"], f"{label}.prior", "is not inside positive bounds low < "
                          "high; expected low <= prior <= high")
    rows = f["rows"].value
    if not isinstance(rows, list) or not all(isinstance(r.value, str) for r in rows):
        raise value_error(f["rows"], f"{label}.rows", f"is not a list; expected "
                          f"{_FIGURE['rows'][1]}")
    return Figure(
        runtime=as_text(f["runtime"], f"{label}.runtime", _FIGURE["runtime"][1]),
        key=as_text(f["key"], f"{label}.key", _FIGURE["key"][1]),
        kind=kind, low=low, high=high, prior=prior, rows=tuple(r.value for r in rows),
        device=as_text(f["device"], f"{label}.device", _FIGURE["device"][1])
        if "device" in f else None,
        where=item.where)


def _value(node: Node, kind: str, path: str) -> float:
    if kind == "fraction":
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise value_error(node, path, "is not a fraction; expected a number in (0, 1]")
        return float(v)
    if not isinstance(node.value, str):
        raise value_error(node, path, 'is not a time; expected a time such as "4 us"')
    try:
        return parse_quantity(node.value, "time")
    except MemwallError as e:
        raise FileError(f"{node.where}: {path}: {e}") from None


# --- fitting -----------------------------------------------------------------------------

Predict = Callable[[Any, Mapping[str, float]], float]  # (point, overrides) -> figure


def overrides_for(point: Any, values: Mapping[Figure, float], device: str) -> dict[str, str]:
    """--set runtime.* texts that put `values` into the run of `point` (on `device`)."""
    out: dict[str, str] = {}
    for fig, v in values.items():
        if fig.applies(point.runtime_name, device):
            out[f"runtime.{fig.key}"] = fig.text(v)
    return out


def log_error(predicted: float, measured: float) -> float:
    return abs(math.log(predicted / measured))


def fit(figures: Sequence[Figure], points: Mapping[str, Any],
        loss: Callable[[Figure, float, Mapping[Figure, float]], float],
        excluded: Callable[[Any], bool] = lambda p: False,
        on_step: Callable[[str], None] | None = None) -> dict[Figure, float]:
    """Fitted values of `figures`: each by golden-section search of `loss(figure, value,
    current values)` over its bounds, using only its rows not `excluded`; a figure left with
    no row keeps its prior. Two passes."""
    values = {f: f.prior for f in figures}
    for _ in range(PASSES):
        for fig in figures:
            rows = [points[r] for r in fig.rows if r in points and not excluded(points[r])]
            if not rows:
                values[fig] = fig.prior
                continue
            values[fig] = _golden(lambda v, fig=fig: loss(fig, v, {**values, fig: v}),
                                  fig.low, fig.high, log=fig.kind == "time")
            if on_step is not None:
                on_step(f"{fig.name} = {fig.text(values[fig])}")
    return values


def _golden(f: Callable[[float], float], low: float, high: float, log: bool) -> float:
    """The minimiser of a unimodal f on [low, high] (in log space when `log`)."""
    to, back = (math.log, math.exp) if log else (float, float)
    a, b = to(low), to(high)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(back(c)), f(back(d))
    for _ in range(SEARCH_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(back(c))
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(back(d))
    return back(c if fc <= fd else d)


def mean_log_error(pairs: Iterable[tuple[float, float]]) -> float:
    errs = [log_error(p, m) for p, m in pairs]
    return sum(errs) / len(errs) if errs else 0.0
