"""The figures of "AI and Memory Wall" (Gholami et al., IEEE Micro 2024): `run.py paper`.

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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.outfile import replacing, write_text

ROOT = Path(__file__).resolve().parent
HIER_DIR = ROOT / "hierarchies"
FIG1_CSV = ROOT / "validation" / "memory_wall_fig1.csv"
FIG3_MODELS = ("bert-base", "bert-large", "gpt2")
FIG3_LENGTHS = (128, 256, 512, 1024, 2048, 4096)  # tokens
FIG3_HIER = "xeon_gold_6242.yaml"
#: Fig. 1 series grouped as the paper fits them; its fitted growth per two years.
FIG1_GROUPS = {"flops": ("flops_cpu", "flops_xeon_phi", "flops_nvidia", "flops_amd_tpu"),
               "dram_bw": ("dram_bw",), "interconnect_bw": ("interconnect_bw",)}
PAPER_RATES = {"flops": 3.0, "dram_bw": 1.6, "interconnect_bw": 1.4}  # x per 2 years


# -- Fig. 3 ---------------------------------------------------------------------------------
def fig3_spec(name: str, length: int) -> Any:
    """The RunSpec of one Fig. 3 point: int8 everywhere, batch 1, positions extended to L."""
    import workloads

    model = workloads.load_workload(name)
    if model.max_positions < length:
        model = dataclasses.replace(model, max_positions=length)
    enc = model.arch == "encoder"
    return workloads.RunSpec(model, batch=1, prompt_len=length if enc else 1,
                             gen_len=0 if enc else length,
                             precision=workloads.Precision.uniform("int8"))


def fig3(lengths: Sequence[int] = FIG3_LENGTHS, engine: str = "des",
         hier_name: str = FIG3_HIER) -> list[dict[str, Any]]:
    """One row per (model, L): flops, mops_bytes, intensity, latency_s, normalized latency."""
    from run import simulate_run
    from sim import load_hierarchy

    hier = load_hierarchy(hier_name, search_dirs=[HIER_DIR])
    rows = []
    for name in FIG3_MODELS:
        for L in lengths:
            s = simulate_run(fig3_spec(name, L), hier, engine)
            rows.append({"model": name, "seq_len": L, "flops": s["flops"],
                         "mops_bytes": s["mops_bytes"],
                         "arithmetic_intensity": s["arithmetic_intensity"],
                         "latency_s": s["total_s"], "engine": engine})
    base = next(r["latency_s"] for r in rows if r["model"] == "bert-base")
    for r in rows:
        r["latency_normalized"] = r["latency_s"] / base
    return rows


def plot_fig3(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    panels = (("flops", "(a) total FLOPs"), ("mops_bytes", "(b) total MOPs (bytes)"),
              ("arithmetic_intensity", "(c) arithmetic intensity (FLOP/byte)"),
              ("latency_normalized", "(d) latency / BERT-Base at 128"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
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
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# -- Fig. 1 ---------------------------------------------------------------------------------
def load_fig1(path: Path | str = FIG1_CSV) -> list[tuple[str, float, float, str]]:
    """(series, year, normalized value, label) rows of the Fig. 1 data."""
    with open(path, newline="") as f:
        return [(r["series"], float(r["year"]), float(r["normalized"]), r["label"])
                for r in csv.DictReader(f)]


def growth_per_two_years(years: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of log(value) against year: (growth factor per 2 years, intercept)."""
    import numpy as np

    slope, intercept = np.polyfit(np.asarray(years), np.log(np.asarray(values)), 1)
    return float(math.exp(2 * slope)), float(intercept)


def fig1_fits(rows: list[tuple[str, float, float, str]]) -> dict[str, dict[str, float]]:
    """Per group: fitted growth per two years, the intercept (ln units) and the paper's rate."""
    out = {}
    for group, series in FIG1_GROUPS.items():
        pts = [(y, v) for s, y, v, _ in rows if s in series]
        rate, icpt = growth_per_two_years([p[0] for p in pts], [p[1] for p in pts])
        out[group] = {"rate_per_2y": rate, "intercept": icpt, "paper": PAPER_RATES[group],
                      "points": len(pts)}
    return out


def plot_fig1(rows: list[tuple[str, float, float, str]], fits: dict[str, dict[str, float]],
              path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
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
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# -- projection -----------------------------------------------------------------------------
def scaled_overrides(hier: Any, years: float) -> list[str]:
    """--set overrides scaling `hier` along the Fig. 1 trends by `years` from now.

    Compute peaks and the vector rate 3.0x per two years; the levels that placement homes
    weights in (DRAM class) 1.6x; the interconnect 1.4x. On-chip levels (those inside the
    weight homes: registers, L1, L2, SRAM) scale with compute, as they are built on the same
    die and their bandwidth grows with SM count and clock. Capacities and latencies stay.
    """
    f_c, f_m, f_i = (PAPER_RATES[k] ** (years / 2) for k in PAPER_RATES)
    c = hier.compute
    out = [f"compute.peak.{k}={v * f_c:.6g} FLOP/s" for k, v in c.peak_flops_per_s.items()]
    out.append(f"compute.vector={c.vector_flops_per_s * f_c:.6g} FLOP/s")
    homes = set(hier.placement.weights)
    inner = min(hier.index(n) for n in homes)
    for i, lv in enumerate(hier.levels):
        f = f_m if lv.name in homes or i > inner else f_c
        out.append(f"memory.{lv.name}.bandwidth={lv.bandwidth_bytes_per_s * f:.6g} B/s")
    if hier.interconnect is not None:
        out.append(f"interconnect.link_bandwidth="
                   f"{hier.interconnect.link_bandwidth_bytes_per_s * f_i:.6g} B/s")
    return out


def projection(hier_name: str, spec: Any, years: int, engine: str = "des",
               overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Simulate `spec` on `hier_name` (with `overrides`, e.g. "compute.dispatch=0 us" to see
    the hardware alone: dispatch does not follow any Fig. 1 trend) scaled every two years."""
    from run import simulate_run
    from sim import apply_overrides, load_hierarchy

    base = load_hierarchy(hier_name, search_dirs=[HIER_DIR], overrides=overrides)
    mem_levels = {lv.name for lv in base.levels}
    rows = []
    for y in range(0, years + 1, 2):
        h = apply_overrides(base, scaled_overrides(base, y)) if y else base
        s = simulate_run(spec, h, engine)
        mem_stall = sum(v for k, v in s["stall_s"].items() if k in mem_levels)
        step = s["decode_s_per_token"] if s["decode_s_per_token"] is not None else s["total_s"]
        rows.append({"year": y, "decode_s_per_token": step, "total_s": s["total_s"],
                     "compute_utilization": s["compute_s"] / s["total_s"],
                     "memory_stall_share": mem_stall / s["total_s"],
                     "dispatch_share": s["stall_s"]["dispatch"] / s["total_s"],
                     "bound_by": s["bound_by"]})
    return rows


def plot_projection(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    plt = _pyplot()
    years = [r["year"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# -- output ---------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def main(argv: Sequence[str]) -> int:
    from run import Parser

    ap = Parser(prog="memwall paper", description="The paper's figures.")
    sub = ap.add_subparsers(dest="figure", required=True)
    p3 = sub.add_parser("fig3", help="BERT vs GPT-2 FLOPs, MOPs, intensity, latency")
    p3.add_argument("--engine", choices=("des", "analytic"), default="des")
    p1 = sub.add_parser("fig1", help="hardware trends with fitted growth per two years")
    pp = sub.add_parser("projection", help="a hierarchy scaled along the trends")
    pp.add_argument("--hier", required=True, help="bundled name or path")
    pp.add_argument("--workload", required=True, help="preset or config.json")
    pp.add_argument("--years", type=int, default=10, help="horizon, in years (default 10)")
    pp.add_argument("--prompt-len", type=int, default=128)
    pp.add_argument("--gen-len", type=int, default=32)
    pp.add_argument("--dtype", default="bf16", help="weights, activations and KV (default bf16)")
    pp.add_argument("--engine", choices=("des", "analytic"), default="des")
    pp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    dest="overrides", help="override the base hierarchy (repeatable)")
    for p in (p3, p1, pp):
        p.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(list(argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.figure == "fig3":
        rows = fig3(engine=args.engine)
        write_csv(rows, out / "fig3.csv")
        plot_fig3(rows, out / "fig3.png")
        for r in rows:
            print(f"{r['model']:<11}{r['seq_len']:>6}  FLOPs {r['flops']:.3e}  MOPs "
                  f"{r['mops_bytes']:.3e}  AI {r['arithmetic_intensity']:8.2f}  latency "
                  f"{r['latency_s'] * 1e3:10.2f} ms  x{r['latency_normalized']:.2f}")
    elif args.figure == "fig1":
        data = load_fig1()
        fits = fig1_fits(data)
        plot_fig1(data, fits, out / "fig1.png")
        write_csv([{"group": g, **f} for g, f in fits.items()], out / "fig1_fits.csv")
        for g, f in fits.items():
            print(f"{g:<16} {f['rate_per_2y']:.2f}x per 2 years (paper {f['paper']}x, "
                  f"{int(f['points'])} points)")
    else:
        import workloads
        from sim import MemwallError

        if not 0 <= args.years <= 100:
            raise MemwallError(f"--years {args.years}: expected an integer from 0 to 100")
        model = workloads.load_workload(args.workload)
        spec = workloads.RunSpec(model, prompt_len=args.prompt_len,
                                 gen_len=0 if model.arch == "encoder" else args.gen_len,
                                 precision=workloads.Precision.uniform(args.dtype))
        rows = projection(args.hier, spec, args.years, args.engine, args.overrides)
        write_csv(rows, out / "projection.csv")
        plot_projection(rows, f"{model.name} on {Path(args.hier).stem}, scaled along the "
                        "Fig. 1 trends", out / "projection.png")
        for r in rows:
            print(f"year {r['year']:>3}: {r['decode_s_per_token'] * 1e3:9.3f} ms/token  compute "
                  f"{100 * r['compute_utilization']:5.1f}%  memory stall "
                  f"{100 * r['memory_stall_share']:5.1f}%  bound by {r['bound_by']}")
    print(f"wrote {out}/", file=sys.stderr)
    return 0
