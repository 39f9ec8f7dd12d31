"""Sweep results: one JSON file per point, the table rebuilt from them, a plot and a verdict.

Point files (DIR/points/<key>.json) are written atomically (a temporary file in the same
directory, fsync, os.replace), so a reader sees a whole point or none. The table, plot and
verdict are computed from the point files only, never from counters kept during the run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.outfile import write_figure, write_text
from sim.units import CYCLES, UnitError, format_quantity, parse_quantity

RUN_COLUMNS = ("workload", "batch", "prompt_len", "gen_len", "weight_dtype", "act_dtype",
               "kv_dtype", "tp", "runtime", "routing", "seed", "engine", "prefetch_depth")
_SKIPPED = {"precision"}  # repeated by weight_dtype, act_dtype, kv_dtype
_KINDS = ("size", "bandwidth", "time", "frequency", "rate")
Row = dict[str, Any]


def point_path(out_dir: Path, key: str) -> Path:
    return out_dir / "points" / f"{key}.json"


def write_point(out_dir: Path, key: str, record: Mapping[str, Any]) -> None:
    (out_dir / "points").mkdir(parents=True, exist_ok=True)
    write_text(point_path(out_dir, key), json.dumps(record, indent=1) + "\n")


def read_point(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The point's record, or None if it was never finished (or is unreadable: rerun it)."""
    try:
        data = json.loads(point_path(out_dir, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def flatten(summary: Mapping[str, Any]) -> Row:
    """Scalar summary keys, and mappings of scalars (or of lists of scalars, as JSON) as
    "stall_s.hbm", "provenance.overrides"; lists and deeper mappings (top_stalls,
    by_op_type) stay in the point files."""
    out: Row = {}
    for key, value in summary.items():
        if key in _SKIPPED:
            continue
        if isinstance(value, Mapping):
            if all(_scalar(v) or _scalars(v) for v in value.values()):
                out.update({f"{key}.{k}": json.dumps(v) if isinstance(v, list) else v
                            for k, v in value.items()})
        elif _scalar(value):
            out[key] = value
    return out


def _scalars(v: Any) -> bool:
    return isinstance(v, list) and all(_scalar(x) for x in v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def build_table(points: Sequence[tuple[Row, Mapping[str, Any]]],
                swept: Sequence[str]) -> tuple[list[str], list[Row]]:
    """Columns and rows: (run parameters and swept values as written, point record) per point."""
    rows: list[Row] = []
    summary_cols: dict[str, None] = {}
    fixed = set(RUN_COLUMNS) | set(swept)
    for run, record in points:
        flat = {k: v for k, v in flatten(record.get("summary") or {}).items() if k not in fixed}
        summary_cols.update(dict.fromkeys(flat))
        row = dict(run)
        if record.get("summary"):
            row["prefetch_depth"] = record["summary"].get("prefetch_depth", run["prefetch_depth"])
        row.update(flat)
        row.update(status=record["status"], error=record.get("error", ""), key=record["key"])
        rows.append(row)
    extra = [p for p in swept if p not in RUN_COLUMNS]  # a swept run setting has its column
    return [*RUN_COLUMNS, *extra, *summary_cols, "status", "error", "key"], rows


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Row]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    write_text(path, buf.getvalue())


# --- reading the rows: the metric, the front, the picture, the verdict -----------------------


def metric(row: Row) -> float | None:
    """Decode time per token, s (total time for a run without decode steps)."""
    if row.get("status") != "ok":
        return None
    v = row.get("decode_s_per_token")
    return v if v is not None else row.get("total_s")


def throughput(row: Row) -> float | None:
    """Tokens per s for the whole batch: generated (throughput_tokens_per_s), or for a run
    without decode steps, prompt tokens processed (batch x prompt_len / total_s)."""
    if row.get("status") != "ok":
        return None
    v = row.get("throughput_tokens_per_s")
    if v is None and row.get("total_s"):
        v = row["batch"] * row["prompt_len"] / row["total_s"]
    return v


#: energy objectives a sweep file may add to the front (memwall.sweep_file.OBJECTIVES), each
#: minimised: the run's energy (J), per generated token (J), and energy x delay (J s, energy_j x
#: total_s); None for a row without them
ENERGY: dict[str, Callable[[Row], float | None]] = {
    "energy_j": lambda r: r.get("energy_j"),
    "joules_per_token": lambda r: r.get("joules_per_token"),
    "edp": lambda r: (r["energy_j"] * r["total_s"] if r.get("energy_j") is not None
                      and r.get("total_s") is not None else None),
}


def magnitudes(values: Sequence[str]) -> dict[str, float]:
    """Each value as a number to order by: SI if every value parses as one kind, else rank."""
    return _magnitudes(values)[0]


def _magnitudes(values: Sequence[str]) -> tuple[dict[str, float], str | None]:
    """(value -> number, its kind: one of _KINDS, "number", or None for names ranked in
    file order)."""
    for kind in _KINDS:
        try:
            return {v: parse_quantity(v, kind) for v in values}, kind
        except UnitError:
            continue
    if all(v.strip().endswith(CYCLES) for v in values):  # latencies in cycles of one clock
        try:
            return {v: parse_quantity(v, "time", clock_hz=1.0) for v in values}, "time"
        except UnitError:
            pass
    try:
        return {v: float(v) for v in values}, "number"
    except ValueError:
        return {v: float(i) for i, v in enumerate(values)}, None


#: Swept run settings that define the workload: points that differ in them are not compared
WORKLOAD_AXES = ("prompt_len", "gen_len")
#: Swept run settings that are choices at no cost (the front compares their points freely)
FREE_AXES = ("batch", "weight_dtype", "act_dtype", "kv_dtype", "runtime")
_GROUP = ("workload", "batch", "prompt_len", "gen_len", "weight_dtype", "act_dtype",
          "kv_dtype", "tp", "runtime", "routing", "seed")


def costs(axes: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """The swept paths that are a cost, each value's cost (more costs more): a capacity, a
    bandwidth, a rate, a clock, a plain number (an efficiency, a unit count) or `tp` (devices)
    as written; a time (a latency, a launch overhead) inverted, since a faster part costs
    more. Names (a policy, a topology) and the free run settings are not costs."""
    out = {}
    for path, values in axes.items():
        if path in WORKLOAD_AXES or path in FREE_AXES:
            continue
        mags, kind = _magnitudes(values)
        if kind is None:
            continue
        out[path] = {v: -m if kind == "time" else m for v, m in mags.items()}
    return out


def groups(rows: Sequence[Row], axes: Mapping[str, Sequence[str]]) -> list[str]:
    """A name per row's workload (points of one workload are compared with each other): the
    preset, with the run settings that tell two workloads apart if the preset repeats. A run
    setting swept as a design choice (batch, tp, a dtype, runtime) does not part workloads."""
    keys = [c for c in _GROUP if c not in axes or c in WORKLOAD_AXES]
    ident = [tuple(r.get(c) for c in keys) for r in rows]
    by_name: dict[str, set[tuple]] = {}
    for r, i in zip(rows, ident, strict=True):
        by_name.setdefault(r["workload"], set()).add(i)
    differ = {name: [c for j, c in enumerate(keys) if len({i[j] for i in ids}) > 1]
              for name, ids in by_name.items()}
    return [r["workload"] if len(by_name[r["workload"]]) == 1 else
            " ".join([r["workload"], *(_short(c, r.get(c)) for c in differ[r["workload"]])])
            for r in rows]


_SHORT = {"batch": "b", "prompt_len": "p", "gen_len": "g", "tp": "tp"}


def _short(column: str, value: Any) -> str:
    return f"{_SHORT[column]}{value}" if column in _SHORT else str(value)


def pareto(rows: Sequence[Row], axes: Mapping[str, Sequence[str]],
           objectives: Sequence[str] = ()) -> set[int]:
    """Indices of the finished rows no other row of the same workload dominates. Objectives:
    the time per token (minimised), the batch's tokens/s (maximised), the cost of every
    swept path that is one (minimised; see `costs`) and each of `objectives` (ENERGY,
    minimised; a row without it is off the front). A row is dominated by one at least as
    good in every objective and better in one."""
    cost = costs(axes)
    names = groups(rows, axes)
    pts = []
    for i, r in enumerate(rows):
        m, tput = metric(r), throughput(r)
        extra = [ENERGY[o](r) for o in objectives]
        if m is None or None in extra:
            continue
        pts.append((i, names[i], [m, -(tput or 0.0), *(cost[p][str(r[p])] for p in cost),
                                  *extra]))
    front = set()
    for i, name, a in pts:
        if not any(n == name and b != a and all(x <= y for x, y in zip(b, a, strict=True))
                   for _, n, b in pts):
            front.add(i)
    return front


def failures(rows: Sequence[Row]) -> list[tuple[str, int]]:
    """The errors of the failed rows, each with how many rows it failed, most first."""
    seen: dict[str, int] = {}
    for r in rows:
        if r.get("status") != "ok":
            error = r.get("error") or "unknown error"
            seen[error] = seen.get(error, 0) + 1
    return sorted(seen.items(), key=lambda kv: -kv[1])


def mark_front(columns: list[str], rows: Sequence[Row],
               axes: Mapping[str, Sequence[str]], objectives: Sequence[str] = ()) -> list[str]:
    """Set each row's `pareto` (True or False; None for a failed row) and return the columns
    with `pareto` before `status`."""
    front = pareto(rows, axes, objectives)
    for i, r in enumerate(rows):
        r["pareto"] = (i in front) if r.get("status") == "ok" else None
    at = columns.index("status")
    return [*columns[:at], "pareto", *columns[at:]]


def plot(path: Path, rows: Sequence[Row], axes: Mapping[str, Sequence[str]],
         description: str = "", objectives: Sequence[str] = ()) -> None:
    """Write `sweep_figure` to `path` (png, pdf or svg by its extension), atomically."""
    fig = sweep_figure(rows, axes, objectives=objectives)
    write_figure(fig, path, {"Title": "memwall sweep", "Description": description})


def sweep_figure(rows: Sequence[Row], axes: Mapping[str, Sequence[str]],
                 max_lines: int = 8, objectives: Sequence[str] = ()) -> Any:
    """Time per token against the first swept path, a line per workload (and per value of the
    other swept paths while that stays under `max_lines` per workload); front ringed. A
    matplotlib Figure, made without pyplot."""
    from matplotlib.figure import Figure

    paths = list(axes)
    xpath = paths[0] if paths else None
    xs = sorted(axes[xpath], key=magnitudes(axes[xpath]).__getitem__) if xpath else ["base"]
    names = groups(rows, axes)
    others = max((len({tuple(r[p] for p in paths[1:]) for r, n in zip(rows, names,
                                                                        strict=True) if n == w})
                  for w in names), default=1)
    lines: dict[str, list[tuple[int, float, int]]] = {}
    for i, (r, name) in enumerate(zip(rows, names, strict=True)):
        if (m := metric(r)) is None:
            continue
        rest = ", ".join(f"{p}={r[p]}" for p in paths[1:])
        label = f"{name}, {rest}" if rest and others <= max_lines else name
        lines.setdefault(label, []).append((xs.index(str(r[xpath])) if xpath else 0, m, i))
    front = pareto(rows, axes, objectives)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for label, pts in lines.items():
        best: dict[int, tuple[float, int]] = {}
        for x, y, i in pts:  # several designs per x: keep the fastest
            if x not in best or y < best[x][0]:
                best[x] = (y, i)
        xy = sorted(best.items())
        ax.plot([x for x, _ in xy], [y for _, (y, _) in xy], marker="o", label=label)
    ring = [(x, y) for pts in lines.values() for x, y, i in pts if i in front]
    if ring:
        ax.scatter(*zip(*ring, strict=True), s=140, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=3, label="Pareto front")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(xpath or "design")
    ax.set_yscale("log")
    ax.set_ylabel("decode time per token, s (total if no decode)")
    ax.grid(True, which="both", alpha=0.3)
    if lines:
        ax.legend(fontsize="small")
    return fig


def verdict(rows: Sequence[Row], axes: Mapping[str, Sequence[str]], top: int = 20,
            objectives: Sequence[str] = ()) -> str:
    """The best designs per workload: the fastest, then the whole Pareto front, fastest first
    (past `top` designs, how many more)."""
    front = pareto(rows, axes, objectives)
    names = groups(rows, axes)
    cost = costs(axes)
    what = ", ".join(["time per token (less is better)", "tokens/s for the batch (more)",
                      *(f"{p} ({'less' if _is_time(axes[p]) else 'more'} costs more)"
                        for p in cost), *(f"{o} (less)" for o in objectives)])
    out = ["best designs per workload",
           f"  front: no other design is as good in every objective and better in one; "
           f"objectives: {what}"]
    for name in dict.fromkeys(names):
        idx = [i for i, n in enumerate(names) if n == name]
        ok = sorted((i for i in idx if metric(rows[i]) is not None), key=lambda i: metric(rows[i]))
        failed = len(idx) - len(ok)
        tail = f"; {failed} failed" if failed else ""
        if not ok:
            out.append(f"  {name}: every design failed: {rows[idx[0]]['error']}")
            continue
        best, worst = ok[0], ok[-1]
        gain = metric(rows[worst]) / metric(rows[best])
        out.append(f"  {name}: fastest {_design(rows[best], axes)} "
                   f"({gain:.2f}x faster than the slowest{tail})")
        on = [i for i in ok if i in front]
        out.append(f"    front: {len(on)} of {len(ok)} designs")
        out.extend(f"    front  {_design(rows[i], axes)}" for i in on[:top])
        if len(on) > top:
            out.append(f"    and {len(on) - top} more on the front (pareto column of "
                       "results.csv)")
    return "\n".join(out)


def _is_time(values: Sequence[str]) -> bool:
    return _magnitudes(values)[1] == "time"


def _design(row: Row, axes: Mapping[str, Sequence[str]]) -> str:
    what = ", ".join(f"{p}={row[p]}" for p in axes) or "base"
    tput = throughput(row)
    rate = f"{tput:,.1f} tokens/s  " if tput else ""
    return f"{format_quantity(metric(row), 'time')}  {rate}{what}  [{row.get('verdict', '')}]"
