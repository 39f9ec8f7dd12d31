"""Serving sweeps: the points of a sweep file with a `serve:` section (each a serving run of one
workload on one design), and what a sweep over `rate` makes of them: the throughput-latency
curve of each design and the highest rate at which it meets the SLO.

    base: gh200.yaml
    workloads: [llama2-13b]
    serve: {requests: 200, prompt_len: 1024, gen_len: 512, slo_ttft: 2, slo_tpot: 0.1}
    grid:
      rate: [1, 2, 4, 8]                        # a serving setting, swept
    zip:
      placement.kv_cache: ["[hbm]", "[hbm, lpddr]"]
      preempt: [recompute, swap]

A rate meets the SLO when at least ATTAINMENT of its requests meet every target given
(DistServe's SLO attainment, Zhong et al. OSDI 2024, at 90%).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.errors import MemwallError, cut
from sim.hierarchy_file import hierarchy_to_dict
from sim.outfile import write_figure
from sim.report import si
from sim.runtime_file import runtime_to_dict

from ..sweep_file import SERVE_SETTINGS, Axis, SweepError, SweepFile, Value, WorkloadEntry
from .requests import parse_rate
from .schedulers import PREEMPT, SCHEDULERS
from .server import run_serve
from .settings import ServeSpec, serve_spec

ATTAINMENT = 0.9  # share of requests within the SLO for a rate to meet it
_WHOLE = ("seed", "max_seqs", "max_batched_tokens", "chunked_prefill", "kv_block")
_TEXT = ("weight_dtype", "act_dtype", "kv_dtype", "tp")  # what a workload entry gives
CHOICES = {"scheduler": tuple(SCHEDULERS), "preempt": PREEMPT}


def _setting(axis: Axis, v: Value) -> Any:
    """A swept serving setting's value as serve() takes it."""
    return v.setting(axis.path, axis.path in _WHOLE, SERVE_SETTINGS[axis.path])


@dataclass(frozen=True)
class ServeTask:
    """One point of a serving sweep, resolved: run on a worker."""

    spec: ServeSpec

    def run(self, command_line: Sequence[str] | None = None) -> dict[str, Any]:
        return run_serve(self.spec, command_line=command_line).to_dict()


def keywords(entry: WorkloadEntry, sweep: SweepFile, combo: Sequence[Value],
             texts: list[str], wheres: list[str]) -> dict[str, Any]:
    """serve()'s keywords for one workload entry on one combination."""
    kw: dict[str, Any] = dict(sweep.serve or {})
    kw.update({k: getattr(entry, k) for k in _TEXT})
    for axis, v in zip(sweep.axes, combo, strict=True):
        if axis.path in SERVE_SETTINGS:
            kw[axis.path] = _setting(axis, v)
        elif axis.is_setting:
            kw[axis.path] = int(v.text) if axis.path == "tp" else v.text
    kw.update(engine=sweep.engine, prefetch_depth=sweep.prefetch_depth,
              runtime=kw.get("runtime", sweep.runtime), overrides=texts, override_origins=wheres)
    return kw


def check(entry: WorkloadEntry, base: Any, sweep: SweepFile) -> None:
    """The serve: section, on the first workload and the sweep's first combination, and each
    swept serving value alone: a bad one is refused now, naming its line."""
    for axis in sweep.axes:
        if axis.path not in SERVE_SETTINGS:
            continue
        for v in axis.values:
            value = _setting(axis, v)
            try:
                if axis.path == "rate":
                    parse_rate(value, "rate")
                elif axis.path in CHOICES and value not in CHOICES[axis.path]:
                    raise MemwallError(f"{cut(str(value))!r}: expected "
                                       f"{SERVE_SETTINGS[axis.path]}")
                elif axis.path in _WHOLE and value < (axis.path != "seed"):
                    raise MemwallError(f"{value}: expected {SERVE_SETTINGS[axis.path]}")
            except MemwallError as e:
                raise SweepError(f"{v.where}: {axis.path}: {e}") from None
    combo = sweep.combinations()[0] if sweep.axes else ()
    texts = [f"{a.path}={v.text}" for a, v in zip(sweep.axes, combo, strict=True)
             if not a.is_setting]
    wheres = [v.where for a, v in zip(sweep.axes, combo, strict=True) if not a.is_setting]
    try:
        serve_spec(entry.workload, base, **keywords(entry, sweep, combo, texts, wheres))
    except MemwallError as e:
        raise SweepError(f"{sweep.serve_where}: serve: {e}") from None


def point(entry: WorkloadEntry, base: Any, sweep: SweepFile, combo: Sequence[Value],
          texts: list[str], wheres: list[str], version: str
          ) -> tuple[dict[str, Any], dict[str, Any], ServeTask | None, str]:
    """(the table row, what the point's key hashes, its task or None, the error) of one
    workload entry on one combination."""
    kw = keywords(entry, sweep, combo, texts, wheres)
    serve = sweep.serve or {}
    row: dict[str, Any] = {"workload": entry.workload, "batch": None,
                           "prompt_len": str(kw.get("prompt_len", serve.get("prompt_len", ""))),
                           "gen_len": str(kw.get("gen_len", serve.get("gen_len", ""))),
                           **{k: kw[k] for k in _TEXT}, "runtime": kw["runtime"] or "",
                           "routing": None, "seed": kw.get("seed", 0), "engine": sweep.engine,
                           "prefetch_depth": sweep.prefetch_depth}
    row.update({a.path: v.text for a, v in zip(sweep.axes, combo, strict=True)})
    try:
        spec = serve_spec(entry.workload, base, **kw)
    except MemwallError as e:
        config = {"memwall": version, "overrides": texts, "serve": {k: str(v) for k, v in
                                                                     kw.items()}}
        return row, config, None, str(e).splitlines()[0]
    run = spec.run
    row.update(weight_dtype=run.spec.precision.weights, act_dtype=run.spec.precision.activations,
               kv_dtype=run.spec.precision.kv_cache, runtime=run.runtime.name,
               prompt_len=spec.source["prompt_len"], gen_len=spec.source["gen_len"])
    arrivals = hashlib.sha256(repr(spec.arrivals).encode()).hexdigest()
    config = {"memwall": version, "hierarchy": overrides_free(run.hierarchy),
              "runtime": runtime_to_dict(run.runtime), "model": repr(run.spec.model),
              "precision": run.spec.precision.as_dict(), "tp": run.spec.tp,
              "engine": run.engine, "overlap": run.overlap,
              "serve": [spec.scheduler, spec.max_seqs, spec.max_tokens, spec.kv_block,
                        spec.preempt, list(spec.slos), dict(spec.source), arrivals]}
    return row, config, ServeTask(spec), ""


def overrides_free(h: Any) -> dict[str, Any]:
    """The hierarchy as its key hashes it: where its file lies does not change the result."""
    d = hierarchy_to_dict(h)
    d.pop("path", None)
    return d


# --- the results: curves and the verdict -----------------------------------------------------


def _design(row: Mapping[str, Any], axes: Mapping[str, Sequence[str]]) -> str:
    rest = ", ".join(f"{p}={row[p]}" for p in axes if p != "rate")
    return f"{row['workload']}" + (f", {rest}" if rest else "")


def _rate(row: Mapping[str, Any]) -> float:
    r = row.get("rate")
    return float("inf") if r in ("inf", None) else float(r)


def _designs(rows: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[str]]
             ) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok":
            out.setdefault(_design(r, axes), []).append(r)
    for rs in out.values():
        rs.sort(key=_rate)
    return out


def attainment(row: Mapping[str, Any]) -> float | None:
    """Share of the point's requests that met every SLO given (None without one)."""
    good = row.get("goodput_requests_per_s")
    if good is None or not row.get("throughput_requests_per_s"):
        return None
    return good / row["throughput_requests_per_s"]


def verdict(rows: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[str]]) -> str:
    """Per design: the highest rate that meets the SLO and the most throughput it reached."""
    out = [f"serving: per design, the highest rate at which {ATTAINMENT:.0%} of requests meet "
           "the SLO, and the most throughput reached"]
    for name, rs in _designs(rows, axes).items():
        best = max(rs, key=lambda r: r["throughput_tokens_per_s"])
        line = (f"  {name}: at most {best['throughput_tokens_per_s']:.0f} tokens/s "
                f"(rate {best.get('rate')}); p90 TTFT {si(best['ttft_s.p90'], 's')}, p90 TPOT "
                f"{si(best['tpot_s.p90'], 's')}")
        if attainment(rs[0]) is not None:
            ok = [r for r in rs if attainment(r) >= ATTAINMENT]
            line += (f"; meets the SLO up to rate {ok[-1].get('rate')} "
                     f"({ok[-1]['throughput_tokens_per_s']:.0f} tokens/s)" if ok
                     else "; meets the SLO at no rate swept")
        out.append(line)
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        out.append(f"  {len(failed)} points failed: {failed[0].get('error', '')}")
    return "\n".join(out)


def figure(rows: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[str]],
           slos: Sequence[float | None] = (None, None)) -> Any:
    """p90 TTFT and p90 TPOT against throughput, a line per design through its rates."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    axs = fig.subplots(1, 2)
    for name, rs in _designs(rows, axes).items():
        x = [r["throughput_tokens_per_s"] for r in rs]
        for ax, key in zip(axs, ("ttft_s.p90", "tpot_s.p90"), strict=True):
            line, = ax.plot(x, [r[key] for r in rs], marker="o", label=name)
            for xi, r in zip(x, rs, strict=True):
                ax.annotate(str(r.get("rate")), (xi, r[key]), fontsize="x-small",
                            textcoords="offset points", xytext=(3, 3), color=line.get_color())
    for ax, what, slo in zip(axs, ("p90 time to first token, s", "p90 time per output token, s"),
                             slos, strict=True):
        if slo:
            ax.axhline(slo, color="black", ls="--", lw=1, label="SLO")
        ax.set_yscale("log")
        ax.set_xlabel("throughput, generated tokens/s")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    axs[0].legend(fontsize="x-small")
    fig.suptitle("throughput against latency, a point per rate (requests/s)")
    return fig


def plot(path: Any, rows: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[str]],
         serve: Mapping[str, Any], description: str = "") -> None:
    slos = (serve.get("slo_ttft"), serve.get("slo_tpot"))
    write_figure(figure(rows, axes, slos), path,
                 {"Title": "memwall serving sweep", "Description": description})
