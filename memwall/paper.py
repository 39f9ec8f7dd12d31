"""The figures of "AI and Memory Wall" (Gholami et al., IEEE Micro 2024): `memwall paper`, and
from Python `memwall.paper.fig3()`, `fig1()`, `projection(...)`, which return rows (plain data)
that `plot_fig3`, `plot_fig1` and `plot_projection` draw as matplotlib Figures.

    fig3        BERT-Base, BERT-Large, GPT-2 at 128 .. 4096 tokens on the Xeon Gold 6242: FLOPs,
                MOPs, arithmetic intensity, latency normalised to BERT-Base at 128 (Fig. 3)
    fig1        hardware trends (validation/memory_wall_fig1.csv) with a least-squares growth
                line per series group, printed as growth per two years (Fig. 1)
    projection  a hierarchy scaled along those trends every two years, one workload simulated
                at each step: the memory wall, simulated

Fig. 3 conventions (the paper's footnote 5): 8-bit weights, activations and KV cache, batch 1;
an encoder runs one pass over L tokens, a decoder generates L tokens one at a time
(prompt_len 1, gen_len L, workloads/spec.py). GPT-2's learned position table stops at 1024 and
BERT's at 512; the paper reports up to 4096, so the counting experiment uses a copy of each
model with max_positions = L (the extra table rows add L x d_model bytes of weights).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import workloads
from sim import Hierarchy, MemwallError
from sim.outfile import write_text

from . import bundled
from .inputs import RUNTIME_PREFIX, as_hierarchy, request
from .progress import Progress
from .simulation import run

FIG3_MODELS = ("bert-base", "bert-large", "gpt2")
FIG3_LENGTHS = (128, 256, 512, 1024, 2048, 4096)  # tokens
FIG3_HIER = "xeon_gold_6242.yaml"
#: Fig. 1 series grouped as the paper fits them; its fitted growth per two years.
FIG1_GROUPS = {"flops": ("flops_cpu", "flops_xeon_phi", "flops_nvidia", "flops_amd_tpu"),
               "dram_bw": ("dram_bw",), "interconnect_bw": ("interconnect_bw",)}
PAPER_RATES = {"flops": 3.0, "dram_bw": 1.6, "interconnect_bw": 1.4}  # x per 2 years


# -- Fig. 3 ---------------------------------------------------------------------------------
def fig3_model(name: str, length: int) -> workloads.ModelConfig:
    """The model of one Fig. 3 point: the preset, its positions extended to L if needed."""
    model = workloads.load_workload(name)
    if model.max_positions < length:
        model = dataclasses.replace(model, max_positions=length)
    return model


def fig3(lengths: Sequence[int] = FIG3_LENGTHS, engine: str = "des",
         hier_name: str = FIG3_HIER, progress: bool = False) -> list[dict[str, Any]]:
    """One row per (model, L): flops, mops_bytes, intensity, latency_s, normalized latency.
    int8 everywhere, batch 1; an encoder runs one pass of L tokens, a decoder generates L
    tokens from a 1-token prompt. `progress`: a bar (or lines) on stderr as runs finish."""
    hier = as_hierarchy(hier_name)
    rows = []
    with Progress(len(FIG3_MODELS) * len(lengths), "run", "fig3", show=progress) as done:
        _fig3_runs(rows, hier, lengths, engine, done)
    base = next(r["latency_s"] for r in rows if r["model"] == "bert-base")
    for r in rows:
        r["latency_normalized"] = r["latency_s"] / base
    return rows


def _fig3_runs(rows: list[dict[str, Any]], hier: Hierarchy, lengths: Sequence[int],
               engine: str, done: Progress) -> None:
    for name in FIG3_MODELS:
        for L in lengths:
            model = fig3_model(name, L)
            enc = model.arch == "encoder"
            s = run(request(model, hier, batch=1, prompt_len=L if enc else 1,
                            gen_len=0 if enc else L, weight_dtype="int8", act_dtype="int8",
                            kv_dtype="int8", engine=engine))
            rows.append({"model": name, "seq_len": L, "flops": s.flops,
                         "mops_bytes": s.mops_bytes,
                         "arithmetic_intensity": s.arithmetic_intensity,
                         "latency_s": s.total_s, "engine": engine})
            done()


def plot_fig3(rows: list[dict[str, Any]]) -> Any:
    """Fig. 3's four panels as a matplotlib Figure."""
    panels = (("flops", "(a) total FLOPs"), ("mops_bytes", "(b) total MOPs (bytes)"),
              ("arithmetic_intensity", "(c) arithmetic intensity (FLOP/byte)"),
              ("latency_normalized", "(d) latency / BERT-Base at 128"))
    fig = _figure((17, 4))
    axes = fig.subplots(1, 4)
    lengths = sorted({r["seq_len"] for r in rows})
    for ax, (key, title) in zip(axes, panels, strict=True):
        for k, name in enumerate(FIG3_MODELS):
            ys = [r[key] for r in rows if r["model"] == name]
            xs = [i + (k - 1) * 0.27 for i in range(len(ys))]
            ax.bar(xs, ys, width=0.27, label=name)
        ax.set(yscale="log", title=title, xlabel="sequence length")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Fig. 3 reproduced: int8, batch 1, Intel Xeon Gold 6242 (memwall)")
    return fig


# -- Fig. 1 ---------------------------------------------------------------------------------
def load_fig1(path: Path | str | None = None) -> list[tuple[str, float, float, str]]:
    """(series, year, normalized value, label) rows of the Fig. 1 data (the bundled
    validation/memory_wall_fig1.csv by default)."""
    path = bundled.folder("validation") / "memory_wall_fig1.csv" if path is None else path
    with open(path, newline="") as f:
        return [(r["series"], float(r["year"]), float(r["normalized"]), r["label"])
                for r in csv.DictReader(f)]


def growth_per_two_years(years: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of log(value) against year: (growth factor per 2 years, intercept)."""
    slope, intercept = np.polyfit(np.asarray(years), np.log(np.asarray(values)), 1)
    return float(math.exp(2 * slope)), float(intercept)


def fig1(rows: list[tuple[str, float, float, str]] | None = None
         ) -> dict[str, dict[str, float]]:
    """Per group of Fig. 1: fitted growth per two years, the intercept (ln units), the
    paper's rate and the number of points (the bundled data by default)."""
    return fig1_fits(load_fig1() if rows is None else rows)


def fig1_fits(rows: list[tuple[str, float, float, str]]) -> dict[str, dict[str, float]]:
    """Per group: fitted growth per two years, the intercept (ln units) and the paper's rate."""
    out = {}
    for group, series in FIG1_GROUPS.items():
        pts = [(y, v) for s, y, v, _ in rows if s in series]
        rate, icpt = growth_per_two_years([p[0] for p in pts], [p[1] for p in pts])
        out[group] = {"rate_per_2y": rate, "intercept": icpt, "paper": PAPER_RATES[group],
                      "points": len(pts)}
    return out


def plot_fig1(rows: list[tuple[str, float, float, str]], fits: dict[str, dict[str, float]]
              ) -> Any:
    """The Fig. 1 points and fitted growth lines as a matplotlib Figure."""
    fig = _figure((8, 5.5))
    ax = fig.subplots()
    colours = {"flops": "tab:blue", "dram_bw": "tab:green", "interconnect_bw": "tab:red"}
    markers = "os^Dv"
    for group, series in FIG1_GROUPS.items():
        for s, m in zip(series, markers, strict=False):
            pts = [(y, v) for name, y, v, _ in rows if name == s]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=m, s=18,
                       color=colours[group], label=s)
        years = [y for name, y, _, _ in rows if name in series]
        xs = np.linspace(min(years), max(years), 50)
        f = fits[group]
        ax.plot(xs, np.exp(f["intercept"] + math.log(f["rate_per_2y"]) / 2 * xs),
                color=colours[group],
                label=f"{group} fit {f['rate_per_2y']:.2f}x / 2 yrs (paper {f['paper']}x)")
    ax.set(yscale="log", xlabel="year", ylabel="normalized to the first point of each series",
           title="Fig. 1 reproduced: hardware scaling")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


# -- projection -----------------------------------------------------------------------------
def scaled(hier: Hierarchy, years: float) -> Hierarchy:
    """`hier` scaled along the Fig. 1 trends by `years` from now.

    Compute peaks and the vector rate 3.0x per two years; the levels that placement homes
    weights in (DRAM class) and any tier outside them 1.6x; the interconnect 1.4x. On-chip
    levels (those inside the weight homes: registers, L1, L2, SRAM) scale with compute, as
    they are built on the same die and their bandwidth grows with SM count and clock.
    Capacities, latencies and dispatch stay. Built directly, not through --set overrides: a
    projection may pass the typo limits of a hierarchy file (10 EFLOP/s per device), which
    guard against unit slips, not against the future.
    """
    f_c, f_m, f_i = (PAPER_RATES[k] ** (years / 2) for k in PAPER_RATES)
    c = hier.compute
    compute = dataclasses.replace(
        c, peak_flops_per_s={k: v * f_c for k, v in c.peak_flops_per_s.items()},
        vector_flops_per_s=c.vector_flops_per_s * f_c)
    homes = set(hier.placement.weights)
    inner = min(hier.index(n) for n in homes)
    levels = tuple(
        dataclasses.replace(lv, bandwidth_bytes_per_s=lv.bandwidth_bytes_per_s * (
            f_m if lv.name in homes or i > inner else f_c))
        for i, lv in enumerate(hier.levels))
    ic = hier.interconnect
    if ic is not None:
        ic = dataclasses.replace(ic, link_bandwidth_bytes_per_s=ic.link_bandwidth_bytes_per_s
                                 * f_i)
    return dataclasses.replace(hier, compute=compute, levels=levels, interconnect=ic)


def projection(hier: str | Hierarchy, workload: Any, years: int = 10, engine: str = "des",
               overrides: Sequence[str] = (), prompt_len: int = 128, gen_len: int = 32,
               dtype: str = "bf16", progress: bool = False) -> list[dict[str, Any]]:
    """Simulate `workload` on `hier` (with `overrides`, e.g. "runtime.kernels.launch=0 us" to
    see the hardware alone: launch overhead follows no Fig. 1 trend) scaled every two years.
    `progress`: a bar (or lines) on stderr as runs finish."""
    if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years <= 100:
        raise MemwallError(f"--years {years}: expected an integer from 0 to 100")
    software = [o for o in overrides if o.strip().startswith(RUNTIME_PREFIX)]
    base = as_hierarchy(hier, [o for o in overrides if o not in software])
    mem_levels = {lv.name for lv in base.levels}
    rows = []
    with Progress(years // 2 + 1, "run", "projection", show=progress) as done:
        for y in range(0, years + 1, 2):
            h = scaled(base, y) if y else base
            s = run(request(workload, h, prompt_len=prompt_len, gen_len=gen_len,
                            weight_dtype=dtype, act_dtype=dtype, kv_dtype=dtype, engine=engine,
                            overrides=software))
            mem_stall = sum(v for k, v in s.stall_s.items() if k in mem_levels)
            step = s.decode_s_per_token if s.decode_s_per_token is not None else s.total_s
            rows.append({"year": y, "decode_s_per_token": step, "total_s": s.total_s,
                         "compute_utilization": s.compute_s / s.total_s,
                         "memory_stall_share": mem_stall / s.total_s,
                         "dispatch_share": s.stall_s["dispatch"] / s.total_s,
                         "bound_by": s.bound_by})
            done()
    return rows


def plot_projection(rows: list[dict[str, Any]], title: str) -> Any:
    """Decode time per token and where the time goes, per year, as a matplotlib Figure."""
    years = [r["year"] for r in rows]
    fig = _figure((11, 4))
    a, b = fig.subplots(1, 2)
    a.plot(years, [1e3 * r["decode_s_per_token"] for r in rows], "o-")
    a.set(yscale="log", xlabel="years from now", ylabel="decode time per token (ms)",
          title="decode step time")
    b.plot(years, [r["compute_utilization"] for r in rows], "o-", label="compute utilization")
    b.plot(years, [r["memory_stall_share"] for r in rows], "s-", label="stalled on memory")
    b.plot(years, [r["dispatch_share"] for r in rows], "^-", label="dispatch")
    b.set(xlabel="years from now", ylabel="share of run time", ylim=(0, 1), title="where time goes")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    return fig


# -- output ---------------------------------------------------------------------------------
def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
