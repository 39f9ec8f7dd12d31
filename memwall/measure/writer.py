"""The files of a measurement: hierarchy.yaml (the hardware), runtime_eager.yaml and
runtime_graphs.yaml (the measured launch overhead, eager and replayed from a CUDA graph, with
the fitted GEMM tile), models.csv, profile.csv and the L2-resident model's config.json. Each
is written whole or not at all (sim/outfile.py); the hierarchy and runtime texts are parsed
back with memwall's own loaders before they are written, so a file memwall cannot read is
never left behind.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from sim.hierarchy_file import parse_hierarchy
from sim.outfile import write_text
from sim.runtime_file import parse_runtime
from sim.units import format_quantity

from .calibration import Calibration, Figure, LevelFigures
from .plan import ModelRun
from .samples import Sample

COMMENT_AT = 32  # column of the comments
#: the columns of validation/measured.csv, which memwall.validation.load_points reads
MODEL_COLUMNS = ("id", "model", "hardware", "devices", "framework", "weight_dtype", "batch",
                 "prompt_len", "gen_len", "metric", "value", "unit", "source", "note",
                 "workload", "hier", "runtime", "sim_weight_dtype", "sim_act_dtype",
                 "sim_kv_dtype", "sim_batch", "sim_prompt_len", "sim_gen_len", "tp", "layers",
                 "max_positions", "quant_group", "quant_group_bits", "set", "figure")
HIERARCHY = "hierarchy.yaml"
RUNTIMES = {False: "runtime_eager.yaml", True: "runtime_graphs.yaml"}


def value_text(f: Figure) -> str:
    """A figure's value as the hierarchy file writes it ("4.8 TB/s", "0.75", "[128, 128, 64]")."""
    if f.kind == "fraction":
        return f"{f.value:.3g}"
    if f.kind in ("count", "word"):
        return str(f.value)
    if f.kind == "cycles":
        return f"{f.value} cycles"
    if f.kind == "tile":
        return "[" + ", ".join(str(x) for x in f.value) + "]"  # type: ignore[attr-defined]
    if f.kind == "size" and isinstance(f.value, int):  # a count the driver reports: exact
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if f.value % size == 0 and f.value // size < 10**6:
                return f"{f.value // size} {unit}"
        if len(str(f.value)) > 4 and f.value % 10**9:  # 4 significant digits would round it
            return f"{f.value} B"
    return format_quantity(float(f.value), f.kind)  # type: ignore[arg-type]


def _line(indent: int, key: str, value: str, comment: str) -> str:
    head = f"{' ' * indent}{key}: {value}" if value else f"{' ' * indent}{key}:"
    return f"{head:<{COMMENT_AT - 1}} # {comment}" if comment else head


def hierarchy_text(cal: Calibration, date: str) -> str:
    """The hierarchy file of `cal`: the hardware, every value line with its comment; its
    default runtime is runtime_eager.yaml beside it."""
    d = cal.device
    source = (f"datasheet figures come from {cal.datasheet}" if cal.datasheet else
              "memwall has no datasheet for this device, so none are datasheet figures")
    lines = [f"# {d.name}, measured by `memwall measure` on {date} ({d.software}).",
             f"# Each figure's comment says what measured it; {source}.",
             "# The hardware only; the launch overhead and GEMM tile are in runtime_eager.yaml",
             "# and runtime_graphs.yaml beside it. Schema: hierarchies/README.md.",
             *(f"# Not measured: {n}." for n in cal.notes),
             "schema_version: 2",
             f"description: {d.name} measured by memwall measure {date}",
             _line(0, "runtime", RUNTIMES[False].removesuffix(".yaml"),
                   "beside this file: launched eagerly (runtime_graphs: replayed)"),
             "compute:", _line(2, "clock", value_text(cal.clock), cal.clock.how),
             _line(2, "peak", "", "dense matmul rates per precision, sustained at full waves")]
    lines += [_line(4, k, value_text(f), f.how) for k, f in cal.peaks.items()]
    lines.append(_line(2, "vector", value_text(cal.vector), cal.vector.how))
    lines.append(_line(2, "units", value_text(cal.units), cal.units.how))
    lines.append("memory:" + " " * (COMMENT_AT - 8) + "# innermost first")
    for lv in cal.levels:
        lines += _level(lv)
    lines += ["placement:",
              _line(2, "weights", "[hbm]", "where the model runs keep them"),
              _line(2, "kv_cache", "[hbm]", "where the model runs keep it"),
              _line(2, "activations", "[l2, hbm]", "as the bundled GPU files")]
    text = "\n".join(lines) + "\n"
    parse_hierarchy(text, HIERARCHY)  # memwall reads it back, or this raises
    return text


def runtime_text(cal: Calibration, date: str, graph: bool = False) -> str:
    """The runtime file of `cal`'s kernels: launched eagerly, or (graph=True) replayed from a
    captured CUDA graph. The model runs time PyTorch kernels one per op, so fusion is none."""
    run = "CUDA graph replay" if graph else "eager PyTorch"
    launch = cal.dispatch_graph if graph else cal.dispatch
    lines = [f"# {cal.device.name}: PyTorch kernels as {run}, measured by `memwall measure` on "
             f"{date}.", "# Schema: runtimes/README.md.",
             "schema_version: 1",
             f"description: {cal.device.name} PyTorch kernels, {run} (memwall measure {date})",
             "kernels:", _line(2, "launch", value_text(launch), launch.how),
             "fusion:",
             _line(2, "epilogues", "false", "model setting: the model runs time one kernel per op"),
             _line(2, "attention", "false", "model setting: attention unfused, as they ran"),
             "efficiency:",
             _line(2, "matmul", "1.0", "the hierarchy's peaks are measured sustained rates")]
    if cal.tile:
        lines.append(_line(2, "matmul_tile", value_text(cal.tile), cal.tile.how))
    if cal.vector_efficiency:
        lines.append(_line(2, "vector", value_text(cal.vector_efficiency),
                           cal.vector_efficiency.how))
    lines.append(_line(0, "prefetch_depth", "1", "model setting, not a measurement: as the "
                       "bundled GPU runtimes"))
    text = "\n".join(lines) + "\n"
    parse_runtime(text, RUNTIMES[graph])  # memwall reads it back, or this raises
    return text


def _level(lv: LevelFigures) -> list[str]:
    out = [f"  - name: {lv.name}"]
    for key in ("capacity", "bandwidth", "latency", "efficiency"):
        f = getattr(lv, key)
        if f is not None:
            out.append(_line(4, key, value_text(f), f.how))
    if lv.policy:
        out.append(_line(4, "policy", lv.policy, "keeps tensors homed in hbm resident across "
                         "ops and tokens, as memwall's GPU files"))
    return out


def write_hierarchies(cal: Calibration, out: str, date: str) -> list[str]:
    """hierarchy.yaml and its two runtimes (eager, CUDA graphs) in `out`; their paths."""
    paths = [f"{out}/{HIERARCHY}"]
    write_text(paths[0], hierarchy_text(cal, date))
    for graph, name in RUNTIMES.items():
        paths.append(f"{out}/{name}")
        write_text(paths[-1], runtime_text(cal, date, graph))
    return paths


def model_rows(runs: Sequence[tuple[ModelRun, Sample]], hardware: str, software: str,
               date: str) -> list[dict[str, object]]:
    """models.csv rows (validation/measured.csv's columns) of timed runs."""
    torch = software.split(",")[0]
    rows = []
    for run, s in runs:
        decode = run.phase == "decode"
        way = "graph" if run.graph else "eager"
        prompt, gen = (run.length, 2) if decode else (run.length, 1)
        rows.append({
            "id": f"measure-{run.name}-{run.phase}-b{run.batch}-{'kv' if decode else 'p'}"
                  f"{run.length}" + (f"-{way}" if decode else ""),
            "model": run.workload + (f" ({run.layers} layers)" if run.layers else ""),
            "hardware": hardware, "devices": 1,
            "framework": f"{torch} {'CUDA graph replay' if run.graph else 'eager'}, one "
                         "kernel per op (memwall measure)",
            "weight_dtype": "bf16", "batch": run.batch, "prompt_len": prompt, "gen_len": gen,
            "metric": "decode_step_s" if decode else "ttft_s",
            "value": f"{s.stats.median:.6g}", "unit": "s", "source": f"memwall measure, {date}",
            "note": f"random weights; median of {s.stats.n} (p10 {s.stats.p10:.4g} s, p90 "
                    f"{s.stats.p90:.4g} s)" + (f"; decode with {run.length} positions cached"
                                                if decode else ""),
            "workload": run.workload, "hier": HIERARCHY, "runtime": RUNTIMES[run.graph],
            "sim_weight_dtype": "bf16", "sim_act_dtype": "bf16", "sim_kv_dtype": "bf16",
            "sim_batch": run.batch, "sim_prompt_len": prompt, "sim_gen_len": gen, "tp": 1,
            "layers": run.layers or "",
            "max_positions": run.max_positions or "",
            "figure": "decode_s_per_token" if decode else "prefill_s"})
    return rows


def csv_rows_text(columns: Sequence[str], rows: Sequence[dict[str, object]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def write_models(rows: Sequence[dict[str, object]], path: str) -> None:
    write_text(path, csv_rows_text(MODEL_COLUMNS, rows))


def write_profile(kernels: Sequence[tuple[str, int, float]], path: str) -> None:
    """profile.csv: one eager decode step's kernels, the most time first."""
    total = sum(t for _, _, t in kernels) or 1.0
    rows = [{"kernel": k, "calls": c, "total_s": f"{t:.6g}", "mean_s": f"{t / max(c, 1):.6g}",
             "share": f"{t / total:.4f}"} for k, c, t in sorted(kernels, key=lambda r: -r[2])]
    write_text(path, csv_rows_text(("kernel", "calls", "total_s", "mean_s", "share"), rows))


def write_config(config: dict[str, object], path: str) -> None:
    write_text(path, json.dumps(config, indent=2) + "\n")
