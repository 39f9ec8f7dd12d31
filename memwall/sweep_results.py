"""Sweep results: one JSON file per point, the table rebuilt from them, a plot and a verdict.

Point files (DIR/points/<key>.json) are written atomically (a temporary file in the same
directory, fsync, os.replace), so a reader sees a whole point or none. The table, plot and
verdict are computed from the point files only, never from counters kept during the run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.outfile import write_figure, write_text
from sim.units import UnitError, format_quantity, parse_quantity

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


def magnitudes(values: Sequence[str]) -> dict[str, float]:
    """Each value as a number to order by: SI if every value parses as one kind, else rank."""
    for kind in _KINDS:
        try:
            return {v: parse_quantity(v, kind) for v in values}
        except UnitError:
            continue
    try:
        return {v: float(v) for v in values}
    except ValueError:
        return {v: float(i) for i, v in enumerate(values)}


def labels(rows: Sequence[Row]) -> list[str]:
    """A name per row's workload: the preset, with its run parameters if the name repeats."""
    def full(r: Row) -> str:
        return (f"{r['workload']} b{r['batch']} p{r['prompt_len']} g{r['gen_len']} "
                f"{r['weight_dtype']}/{r['act_dtype']}/{r['kv_dtype']} tp{r['tp']}")
    fulls = {r["workload"]: set() for r in rows}
    for r in rows:
        fulls[r["workload"]].add(full(r))
    return [r["workload"] if len(fulls[r["workload"]]) == 1 else full(r) for r in rows]


def pareto(rows: Sequence[Row], axes: Mapping[str, Sequence[str]]) -> set[int]:
    """Indices of rows no other row of the same workload beats: at most as much of every swept
    value (cost) and at most the time, better in one."""
    mags = {p: magnitudes(vs) for p, vs in axes.items()}
    names = labels(rows)
    pts = [(i, names[i], [mags[p][str(r[p])] for p in axes] + [m])
           for i, r in enumerate(rows) if (m := metric(r)) is not None]
    front = set()
    for i, name, a in pts:
        if not any(n == name and all(x <= y for x, y in zip(b, a, strict=True)) and b != a
                   for _, n, b in pts):
            front.add(i)
    return front


def plot(path: Path, rows: Sequence[Row], axes: Mapping[str, Sequence[str]],
         description: str = "") -> None:
    """Write `sweep_figure` to `path` (png, pdf or svg by its extension), atomically."""
    fig = sweep_figure(rows, axes)
    write_figure(fig, path, {"Title": "memwall sweep", "Description": description})


def sweep_figure(rows: Sequence[Row], axes: Mapping[str, Sequence[str]],
                 max_lines: int = 8) -> Any:
    """Time per token against the first swept path, a line per workload (and per value of the
    other swept paths while that stays under `max_lines` per workload); front ringed. A
    matplotlib Figure, made without pyplot."""
    from matplotlib.figure import Figure

    paths = list(axes)
    xpath = paths[0] if paths else None
    xs = sorted(axes[xpath], key=magnitudes(axes[xpath]).__getitem__) if xpath else ["base"]
    names = labels(rows)
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
    front = pareto(rows, axes)
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


def verdict(rows: Sequence[Row], axes: Mapping[str, Sequence[str]], top: int = 5) -> str:
    """The best designs per workload: the fastest, then the Pareto front, fastest first."""
    front = pareto(rows, axes)
    names = labels(rows)
    out = ["best designs (time per token; front: no design is faster with no more of any "
           "swept value)"]
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
        shown = [i for i in ok if i in front][:top]
        out.extend(f"    front  {_design(rows[i], axes)}" for i in shown)
    return "\n".join(out)


def _design(row: Row, axes: Mapping[str, Sequence[str]]) -> str:
    what = ", ".join(f"{p}={row[p]}" for p in axes) or "base"
    return f"{format_quantity(metric(row), 'time')}  {what}  [{row.get('verdict', '')}]"
