"""Calibration kept apart from validation: declared runtime figures fitted on declared rows.

`validation/calibration.yaml` lists each figure that is fitted, in fitting order:

    figures:
      - name: gemv-streaming                   # how reports name it
        targets: [gpt-fast:efficiency.memory,  # runtime:path pairs (runtimes/README.md) that
                  tensorrt-llm:efficiency.memory]  # take the one value; a path such as
        #                                        devices.h100_sxm.efficiency.matmul is one device's
        kind: fraction                         # time or fraction
        bounds: [0.4, 1]                       # the search range
        prior: 1                               # the figure when none of its rows may be used
        rows: [gptfast-llama2-7b-bf16-a100, ...]   # ids in validation/measured.csv

One figure may stand in several runtime files (`targets`) where the same library does the
same work (cuBLAS GEMMs on one device, decode GEMV kernels streaming weights); its rows may
then come from any of those runtimes.

A figure is fitted by golden-section search over its bounds (on a log scale for times),
minimising the mean absolute log error of its rows, with the figures before it at their
current values; two passes let them settle together. Nothing else is fitted: every other
figure of the hardware and runtime files is a datasheet, microbenchmark or estimate figure.

Leave-one-source-out: for each source (the `source` column) that holds a calibration row,
the figures fitted on that source's rows are fitted again without them (a figure left with no
row takes its prior; the others keep their full-fit values), and that source's rows are
predicted with those figures. Every other row was never used by any fit, so its
leave-one-source-out prediction is its in-sample one. `memwall calibrate` runs both fits,
writes the fitted values into the runtime files, each on its own line with a comment saying
which rows it came from, and the folds into `validation/calibration_results.json`, which
`memwall validate` reads.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import MemwallError
from sim.outfile import write_text
from sim.units import parse_quantity
from sim.yamlfile import FileError, Node, as_choice, as_mapping, as_text, compose, value_error

from . import bundled

KINDS = ("time", "fraction")
GOLDEN = (math.sqrt(5) - 1) / 2
SEARCH_STEPS = 14  # golden-section steps: the bracket shrinks to 0.618^14 = 0.1% of itself
PASSES = 2
RESULTS_VERSION = 1


class CalibrationError(MemwallError):
    """A calibration file that cannot be used; one line naming file, line, key and value."""


@dataclass(frozen=True)
class Figure:
    """One fitted figure: one value, written to one or more keys of runtime files."""

    name: str
    targets: tuple[tuple[str, str], ...]  # (bundled runtime, dotted path in its file)
    kind: str  # time | fraction
    low: float  # SI
    high: float
    prior: float
    rows: tuple[str, ...]  # measured.csv ids it is fitted on
    where: str = ""

    @property
    def runtimes(self) -> set[str]:
        return {r for r, _ in self.targets}

    def text(self, value: float) -> str:
        """The value as the runtime file writes it (times in us or ms, 3 digits)."""
        if self.kind == "fraction":
            return f"{value:.3g}"
        return f"{value * 1e3:.3g} ms" if value >= 1e-3 else f"{value * 1e6:.3g} us"

    def keys(self, runtime: str, device: str) -> list[str]:
        """The paths this figure sets in a run of `runtime` on the hierarchy `device`: a
        devices.NAME.* path only on that device, and a top-level path only where the
        runtime's entry for the device does not set it (the entry wins over the file's
        top-level value, fitted or not)."""
        out = []
        for r, key in self.targets:
            if r != runtime:
                continue
            parts = key.split(".")
            if parts[0] == "devices":
                if parts[1] == device:
                    out.append(key)
            elif key not in device_keys(runtime, device):
                out.append(key)
        return out


@functools.cache
def device_keys(runtime: str, device: str) -> frozenset[str]:
    """The paths the bundled runtime's entry for `device` sets."""
    from .inputs import as_runtime

    try:
        texts = as_runtime(runtime).devices.get(device, ())
    except MemwallError:
        return frozenset()
    return frozenset(t.split("=", 1)[0] for t in texts)


_FILE = {"figures": (True, "a list of figures, each with runtime, key, kind, bounds, prior, rows")}
_FIGURE = {
    "name": (True, "a name such as gemv-streaming"),
    "targets": (True, "a list of runtime:path such as tensorrt-llm:kernels.launch"),
    "kind": (True, f"one of {', '.join(KINDS)}"),
    "bounds": (True, 'two values such as ["1 us", "20 us"]'),
    "prior": (True, 'a value such as "4 us" or 0.8'),
    "rows": (True, "a list of ids of validation/measured.csv"),
    "why": (False, "a line saying what the rows pin down"),
}


def calibration_file() -> Path:
    return bundled.folder("validation") / "calibration.yaml"


def results_file() -> Path:
    return bundled.folder("validation") / "calibration_results.json"


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
        figures = [_figure(item, i) for i, item in enumerate(items)]
    except FileError as e:
        raise CalibrationError(str(e)) from None
    seen: dict[str, Figure] = {}
    for f in figures:
        for t in (f.name, *(f"{r}:{k}" for r, k in f.targets)):
            if t in seen:
                raise CalibrationError(f"{f.where}: figures: {t} twice (first at "
                                       f"{seen[t].where}); expected each figure and target "
                                       "once")
            seen[t] = f
    return figures


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
    if not isinstance(rows, list) or not rows or not all(isinstance(r.value, str) for r in rows):
        raise value_error(f["rows"], f"{label}.rows", f"is not a list of ids; expected "
                          f"{_FIGURE['rows'][1]}")
    targets = f["targets"].value
    wanted = _FIGURE["targets"][1]
    if not isinstance(targets, list) or not targets:
        raise value_error(f["targets"], f"{label}.targets", f"is not a list; expected {wanted}")
    pairs = []
    for t in targets:
        text = as_text(t, f"{label}.targets", wanted)
        runtime, _, key = text.partition(":")
        if not runtime or not key:
            raise value_error(t, f"{label}.targets", f"has no runtime:path; expected {wanted}")
        pairs.append((runtime, key))
    return Figure(
        name=as_text(f["name"], f"{label}.name", _FIGURE["name"][1]),
        targets=tuple(pairs),
        kind=kind, low=low, high=high, prior=prior, rows=tuple(r.value for r in rows),
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


def calibration_rows(figures: Iterable[Figure]) -> set[str]:
    """Every row some figure is fitted on."""
    return {r for f in figures for r in f.rows}


# --- fitting -----------------------------------------------------------------------------

#: predicted figure of a point with "runtime.PATH=VALUE" overrides
Predict = Callable[[Any, tuple[str, ...]], float]
#: (runtime name, hierarchy name) a point runs
Where = Callable[[Any], tuple[str, str]]


def overrides_for(values: Mapping[Figure, float], runtime: str, device: str) -> tuple[str, ...]:
    """--set texts that put `values` into a run of `runtime` on `device`, sorted."""
    return tuple(sorted(f"runtime.{key}={fig.text(v)}" for fig, v in values.items()
                        for key in fig.keys(runtime, device)))


def log_error(predicted: float, measured: float) -> float:
    return abs(math.log(predicted / measured))


class Fitter:
    """Fits figures on points, remembering every prediction it has made (by point and
    overrides), so that the folds and the second pass reuse what they can."""

    def __init__(self, figures: Sequence[Figure], points: Mapping[str, Any], predict: Predict,
                 where: Where, on_step: Callable[[str], None] | None = None) -> None:
        missing = [r for f in figures for r in f.rows if r not in points]
        if missing:
            raise CalibrationError(f"{figures[0].where}: rows {', '.join(sorted(set(missing)))}"
                                   " are not in the measurements; expected ids of measured.csv")
        for f in figures:
            wrong = [r for r in f.rows if not f.keys(*where(points[r]))]
            if wrong:
                raise CalibrationError(f"{f.where}: rows {', '.join(wrong)} run no target of "
                                       f"{f.name}; expected rows its value changes")
        self.figures, self.points, self._predict = list(figures), points, predict
        self.where, self.on_step = where, on_step
        self.cache: dict[tuple[str, tuple[str, ...]], float] = {}

    def predict(self, pid: str, values: Mapping[Figure, float]) -> float:
        p = self.points[pid]
        key = (pid, overrides_for(values, *self.where(p)))
        if key not in self.cache:
            self.cache[key] = self._predict(p, key[1])
        return self.cache[key]

    def loss(self, rows: Sequence[str], values: Mapping[Figure, float]) -> float:
        return sum(log_error(self.predict(r, values), self.points[r].measured)
                   for r in rows) / len(rows)

    def fit(self, excluded: Callable[[Any], bool] = lambda p: False,
            start: Mapping[Figure, float] | None = None,
            only: Iterable[Figure] | None = None) -> dict[Figure, float]:
        """Fitted values: each figure of `only` (default all) by golden-section search over
        its bounds, using its rows not `excluded`; a figure left with no row takes its prior.
        The rest keep their `start` values (default: priors)."""
        values = {f: f.prior for f in self.figures} if start is None else dict(start)
        chosen = self.figures if only is None else [f for f in self.figures if f in set(only)]
        for _ in range(PASSES):
            for fig in chosen:
                rows = [r for r in fig.rows if not excluded(self.points[r])]
                if not rows:
                    values[fig] = fig.prior
                    continue
                values[fig] = _golden(lambda v, fig=fig, rows=rows: self.loss(
                    rows, {**values, fig: v}), fig.low, fig.high, log=fig.kind == "time")
                if self.on_step is not None:
                    self.on_step(f"{fig.name} = {fig.text(values[fig])} "
                                 f"(mean |log error| {self.loss(rows, values):.4f})")
        return values

    def folds(self, full: Mapping[Figure, float]) -> dict[str, dict[Figure, float]]:
        """For each source holding calibration rows: the figures refitted without them."""
        sources = sorted({self.points[r].source for f in self.figures for r in f.rows})
        out = {}
        for source in sources:
            touched = [f for f in self.figures
                       if any(self.points[r].source == source for r in f.rows)]
            if self.on_step is not None:
                self.on_step(f"leave out {source}: refit {', '.join(f.name for f in touched)}")
            values = self.fit(lambda p, s=source: p.source == s, start=full, only=touched)
            out[source] = {f: values[f] for f in touched}
        return out


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


# --- results and the runtime files ---------------------------------------------------------

def results_to_dict(figures: Sequence[Figure], full: Mapping[Figure, float],
                    folds: Mapping[str, Mapping[Figure, float]], engine: str) -> dict[str, Any]:
    """What `memwall calibrate` found, as validation/calibration_results.json stores it."""
    return {
        "version": RESULTS_VERSION, "engine": engine,
        "figures": [{"name": f.name, "text": f.text(full[f]), "value": full[f],
                     "prior": f.prior, "rows": list(f.rows),
                     "targets": [f"{r}:{k}" for r, k in f.targets]} for f in figures],
        "folds": {s: {f.name: v for f, v in vals.items()} for s, vals in folds.items()},
    }


def read_results(figures: Sequence[Figure], path: Path | str | None = None,
                 ) -> tuple[dict[Figure, float], dict[str, dict[Figure, float]]] | None:
    """(full-fit values, folds) from a results file, or None when there is none. Figures the
    file does not know (the calibration file changed since) are a CalibrationError."""
    path = Path(results_file() if path is None else path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        by_name = {f.name: f for f in figures}
        stale = [d["name"] for d in data["figures"] if d["name"] not in by_name
                 or d["rows"] != list(by_name[d["name"]].rows)
                 or d["targets"] != [f"{r}:{k}" for r, k in by_name[d["name"]].targets]]
        if stale:
            raise CalibrationError(f"{path}: figures {', '.join(stale)} differ from "
                                   "validation/calibration.yaml (rows or targets); expected "
                                   "the same figures; run `memwall calibrate` again")
        full = {by_name[d["name"]]: float(d["value"]) for d in data["figures"]}
        folds = {s: {by_name[n]: float(v) for n, v in vals.items()}
                 for s, vals in data["folds"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationError(f"{path}: not a calibration result ({type(e).__name__}: {e}); "
                               "expected what `memwall calibrate` writes; run it again") from None
    if set(full) != set(figures):
        raise CalibrationError(f"{path}: its figures differ from validation/calibration.yaml; "
                               "expected the same figures; run `memwall calibrate` again")
    return full, folds


_LINE = re.compile(r"^(?P<head>\s*(?:- )?(?P<key>[A-Za-z0-9_]+):\s*)(?P<value>[^#\n]*?)"
                   r"(?P<gap>\s*)(?P<comment>#.*)?$")


def write_back(text: str, fig: Figure, key: str, value: float, name: str) -> str:
    """The runtime file `text` with `fig`'s value at `key` replaced on its own line, and the
    line's comment saying where the value came from. The key must sit on a line of its own."""
    root = compose(text, str, "")
    node = root
    for part in key.split("."):
        if node is None or not isinstance(node.value, dict) or part not in node.value:
            raise CalibrationError(f"{name}: {key}: not in the file; expected the key on a "
                                   f"line of its own (a block mapping) to write {fig.name}")
        node = node.value[part]
    line = int(node.where) - 1
    lines = text.split("\n")
    m = _LINE.match(lines[line])
    if m is None or m["key"] != key.split(".")[-1]:
        raise CalibrationError(f"{name}:{line + 1}: {key}: not on a line of its own; "
                               "expected `key: value  # comment` to write the fitted value")
    n = len(fig.rows)
    comment = (f"# fitted: {fig.name}, {n} row{'s' if n > 1 else ''} of "
               f"validation/calibration.yaml; prior {fig.text(fig.prior)}")
    shown = fig.text(value)
    width = len(m["head"]) + len(m["value"]) + len(m["gap"] or "")  # keep the comment column
    head = f"{m['head']}{shown}"
    lines[line] = f"{head}{' ' * max(2, width - len(head))}{comment}"
    return "\n".join(lines)


def write_runtime_files(figures: Sequence[Figure], values: Mapping[Figure, float],
                        folder: Path | None = None) -> list[Path]:
    """Write `values` into the runtime files of `folder` (the bundled runtimes/), each file
    once, atomically; the files written."""
    folder = bundled.folder("runtimes") if folder is None else folder
    by_file: dict[Path, list[tuple[Figure, str]]] = {}
    for f in figures:
        for runtime, key in f.targets:
            by_file.setdefault(folder / f"{runtime}.yaml", []).append((f, key))
    texts = {}
    for path, items in by_file.items():  # every file checked before any is written
        if not path.is_file():
            raise CalibrationError(f"{items[0][0].where}: runtime {path.stem}: no file "
                                   f"{path}; expected a bundled runtime")
        text = path.read_text(encoding="utf-8")
        for f, key in items:
            text = write_back(text, f, key, values[f], str(path))
        texts[path] = text
    for path, text in texts.items():
        write_text(path, text)
    return list(texts)


def write_results(data: Mapping[str, Any], path: Path | None = None) -> Path:
    path = results_file() if path is None else path
    write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def run_calibration(engine: str = "des", write: bool = True,
                    on_step: Callable[[str], None] | None = None,
                    ) -> tuple[dict[str, str], list[Path]]:
    """`memwall calibrate`: fit every figure on its rows of the bundled measured.csv, then
    each source's folds; write the runtime files and the results unless not `write`.
    Returns the fitted texts by figure name and the files written."""
    from .inputs import as_hierarchy
    from .validation import load_points, predict, where_of

    figures = read_figures()
    points = {p.id: p for p in load_points()}
    hiers: dict[str, Any] = {}

    def hier(p: Any) -> Any:
        if p.hier not in hiers:
            hiers[p.hier] = as_hierarchy(p.hier)
        return hiers[p.hier]

    fitter = Fitter(figures, points, lambda p, o: predict(p, hier(p), engine, o),
                    lambda p: where_of(p, hier(p)), on_step)
    full = fitter.fit()
    folds = fitter.folds(full)
    files: list[Path] = []
    if write:
        files = write_runtime_files(figures, full)
        files.append(write_results(results_to_dict(figures, full, folds, engine)))
    return {f.name: f.text(full[f]) for f in figures}, files
