"""Pictures of a serving run, from its per-request and per-iteration tables (a ServeResult's,
or the /requests and /iterations groups of a trace written by `memwall serve --trace`):

    latency    CDFs of TTFT, TPOT and end-to-end latency, one panel each (log time axis)
    occupancy  the KV cache in use against its capacity, the batch size and the queue over time

matplotlib Figures made without pyplot (sim/plot.py's habit); `memwall plot TRACE.h5 --kind
latency|occupancy -o FILE` writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.errors import MemwallError
from sim.outfile import figure_format, write_figure

KINDS = ("latency", "occupancy")
SIZE_IN = (10.0, 4.0)
DPI = 120


def latency_figure(requests: Mapping[str, np.ndarray], title: str = "") -> Any:
    """CDFs of the requests' TTFT, TPOT and end-to-end latency, with p50, p90 and p99 marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (key, label) in zip(axes, (("ttft_s", "time to first token"),
                                       ("tpot_s", "time per output token"),
                                       ("e2e_s", "end-to-end latency")), strict=True):
        x = np.sort(np.asarray(requests[key], dtype=np.float64))
        x = x[np.isfinite(x)]
        if len(x):
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post")
            for q in (50, 90, 99):
                v = np.percentile(x, q)
                ax.axvline(v, color="grey", lw=0.8, ls=":")
                ax.text(v, 0.02 + q / 100 * 0.3, f"p{q}", fontsize="x-small", rotation=90)
            if x[0] > 0 and x[-1] / x[0] > 20:
                ax.set_xscale("log")
        ax.set_xlabel(f"{label}, s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    fig.suptitle(title or "latency CDFs")
    return fig


def occupancy_figure(iterations: Mapping[str, np.ndarray], kv_capacity_bytes: float,
                     title: str = "") -> Any:
    """KV bytes held against the capacity (top); sequences per iteration and requests queued
    (bottom), against time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE_IN[0], 6.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    t = np.asarray(iterations["start_s"], dtype=np.float64)
    top.step(t, np.asarray(iterations["kv_bytes"]) / 1e9, where="post", label="KV blocks held")
    top.axhline(kv_capacity_bytes / 1e9, color="black", ls="--", lw=1, label="capacity")
    top.set_ylabel("KV cache, GB")
    top.legend(fontsize="small")
    bottom.step(t, iterations["batch"], where="post", label="sequences run")
    bottom.step(t, iterations["waiting"], where="post", label="requests queued")
    if np.any(iterations["swapped"]):
        bottom.step(t, iterations["swapped"], where="post", label="swapped out")
    pre = np.asarray(iterations["preempted"]) > 0
    if pre.any():
        bottom.plot(t[pre], np.asarray(iterations["batch"])[pre], "x", color="red",
                    label="preemption")
    bottom.set_xlabel("time, s")
    bottom.set_ylabel("count")
    bottom.legend(fontsize="small")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or "KV occupancy and batch size")
    return fig


def read_tables(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                                       dict[str, np.ndarray]]:
    """(summary, requests, iterations) of a serving trace."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "requests" not in f or "iterations" not in f:
                raise MemwallError(f"{path}: no serving tables (/requests, /iterations); "
                                   "expected a trace written by memwall serve --trace")
            summary = json.loads(f.attrs["summary"])
            return (summary, {c: f["requests"][c][:] for c in f["requests"]},
                    {c: f["iterations"][c][:] for c in f["iterations"]})
    except OSError as e:
        raise MemwallError(f"{path}: cannot read it as an HDF5 trace: {e}") from None


def plot_serving(path: str | os.PathLike[str], kind: str,
                 out: str | os.PathLike[str]) -> None:
    """Draw picture `kind` of the serving trace `path` into `out` (png, pdf or svg)."""
    if kind not in KINDS:
        raise MemwallError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    figure_format(out, "-o")
    summary, requests, iterations = read_tables(path)
    title = (f"{summary['workload']} on {summary['hierarchy']}, {summary['requests']} requests, "
             f"{summary['scheduler']} batching")
    fig = (latency_figure(requests, title) if kind == "latency"
           else occupancy_figure(iterations, summary["kv_capacity_bytes"], title))
    write_figure(fig, out, {"Title": title,
                            "Description": json.dumps(summary.get("provenance", {}))}, dpi=DPI)
