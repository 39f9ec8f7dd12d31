"""Running a request: the one function every caller runs a simulation through.

    >>> import memwall
    >>> r = memwall.simulate("gpt2", "hbm_accel", prompt_len=16, gen_len=4)
    >>> r.bound_by, r.n_ops
    ('hbm', 304)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

import sim
import workloads
from sim import EngineOptions, OpRecord, OpTable, Summary, cost, sampling, tensor_footprint
from sim.outfile import check_target, memwall_version, write_text
from sim.trace import FIELD

from .inputs import Request, request
from .result import RunResult

Engine = Callable[..., None]


def _des(*args: Any, **kw: Any) -> None:
    """sim.simulate, looked up when a run needs it: an analytic run never loads SimPy."""
    return sim.simulate(*args, **kw)


#: name -> engine; both run the same op graphs through the same memory system and cost model.
ENGINES: dict[str, Engine] = {"des": _des, "analytic": sim.simulate_analytic}
#: op executions per second of each engine, for run_size's estimate (llama2-7b, 16 + 400
#: tokens on a 2-core machine: 90,800 ops in 5.5 s des, 2.5 s analytic, start-up excluded)
OPS_PER_S = {"des": 16_000, "analytic": 36_000}
LONG_RUN_S = 60.0  # the command line prints run_size before a run estimated longer


class RunTooLarge(sim.MemwallError):
    """A run whose op executions exceed the cap given (max_ops, --max-ops)."""


def run_size(req: Request) -> tuple[int, float]:
    """(op executions the run will simulate, estimated seconds), from its first two graphs,
    before any work: the prefill once, then each decode step run (all, or the sampled)."""
    spec = req.spec
    sample = sampling.plan(spec.n_phases - 1, req.decode_samples)
    steps = spec.n_phases - 1 if sample is None else len(sample.steps)
    graphs = iter(workloads.phases(spec, req.fusion, None if sample is None else sample.steps))
    n = next(graphs).number_of_nodes()
    if steps:
        n += steps * next(graphs).number_of_nodes()
    return n, n / OPS_PER_S[req.engine]


def simulate(workload: Any, hierarchy: Any, *, records: bool = False,
             trace: str | os.PathLike[str] | None = None,
             ops: str | os.PathLike[str] | None = None, progress: bool = False,
             max_ops: int | None = None, **settings: Any) -> RunResult:
    """Simulate `workload` (a preset name, a config.json path or a ModelConfig) on
    `hierarchy` (a Hierarchy, a bundled name, a path, YAML text or a mapping).

    `settings` are the command line's flags as keywords, with its defaults: batch,
    prompt_len (128), gen_len (128 for a decoder), weight_dtype (the model's, else bf16),
    act_dtype, kv_dtype (bf16), tp, engine ("des" or "analytic"), runtime (the hierarchy's
    default), fusion and prefetch_depth (the runtime's), overlap, routing ("uniform" or
    "zipf:S"), routing_file, seed (0), and overrides (a mapping or "PATH=VALUE" texts, as
    --set; paths starting with "runtime." change the runtime). `records=True` keeps every op
    execution as columns in `RunResult.records`; `trace` writes them to an HDF5 trace; `ops`
    writes the per-op-type table (sim.op_table) as CSV. `max_ops` refuses, before any work,
    a run of more op executions (run_size).
    """
    return run(request(workload, hierarchy, **settings), records=records, trace=trace,
               ops=ops, progress=progress, max_ops=max_ops)


def run(req: Request, *, records: bool = False, trace: str | os.PathLike[str] | None = None,
        ops: str | os.PathLike[str] | None = None,
        progress: bool = False, sinks: Iterable[Callable[[OpRecord], None]] = (),
        command_line: Sequence[str] | None = None, max_ops: int | None = None) -> RunResult:
    """Run `req`: every op record goes to the summary (and to `sinks`, the trace, the op-type
    table and the kept columns); the result is computed from the records. A run of more than
    `max_ops` op executions (run_size) is refused before any work."""
    if max_ops is not None:
        n, secs = run_size(req)
        if n > max_ops:
            raise RunTooLarge(f"the run simulates {n:,} op executions (about "
                              f"{duration(secs)}); expected at most {max_ops:,} (max_ops, "
                              "--max-ops): fewer tokens, or sampled decode steps "
                              "(--decode-samples)")
    if trace is not None:
        check_target(trace, "trace")
    if ops is not None:
        check_target(ops, "ops")
    spec, hier, rt = req.spec, req.hierarchy, req.runtime
    sample = sampling.plan(spec.n_phases - 1, req.decode_samples)
    summary = Summary(hier, rt.memory_efficiency, sample)
    kept: list[OpRecord] | None = [] if records else None
    meta = _meta(req)
    meta["provenance"] = provenance(req, command_line)
    writer = None
    if trace is not None:
        from sim.trace_file import TraceWriter  # loads h5py

        writer = TraceWriter(trace, hier, list(command_line or ()), meta["provenance"],
                             runtime=rt, sample=sample,
                             tariff=sim.energy.tariff(hier, meta["precision"], spec.tp))
    out = [summary.add, *sinks]
    if writer is not None:
        out.append(writer.add)
    table = OpTable([lv.name for lv in hier.levels]) if ops is not None else None
    if table is not None:
        out.append(table.add)
    if kept is not None:
        out.append(kept.append)
    sink = out[0] if len(out) == 1 else _fan_out(out)
    bar = None
    if progress:
        from tqdm import tqdm

        n = spec.n_phases if sample is None else 1 + len(sample.steps)
        bar = tqdm(total=n, unit="step", delay=2.0, file=sys.stderr, leave=False)
    options = EngineOptions(runtime=rt, overlap=req.overlap, tp=spec.tp)
    footprint = tensor_footprint(workloads.final_phase(spec))
    with writer or nullcontext():
        try:
            graphs = workloads.phases(spec, req.fusion, None if sample is None else sample.steps)
            ENGINES[req.engine](graphs, hier, footprint, sink, options,
                                on_phase=(lambda G: bar.update()) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        result = summary.result(meta)
        if writer is not None:
            writer.finish(result)
    if table is not None:
        write_text(ops, table.csv_text())
    columns = _columns(kept, [lv.name for lv in hier.levels]) if kept is not None else None
    return RunResult.from_summary(result, hier, columns)


def duration(secs: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= 2 * size:
            return f"{secs / size:,.0f} {unit}"
    return f"{secs:.0f} s"


def _fan_out(sinks: list[Callable[[OpRecord], None]]) -> Callable[[OpRecord], None]:
    def fan_out(record: OpRecord) -> None:
        for s in sinks:
            s(record)

    return fan_out


def _meta(req: Request) -> dict[str, Any]:
    """The run's inputs, as the summary's first keys."""
    spec, hier, p = req.spec, req.hierarchy, req.spec.precision
    mm_dtype = workloads.compute_dtype(p.weights, p.activations)
    home = hier.level(hier.placement.weights[0])
    return {
        "workload": req.workload.name,
        "hierarchy": hier.name,
        "engine": req.engine,
        "arch": spec.model.arch,
        "batch": spec.batch,
        "prompt_len": spec.prompt_len,
        "gen_len": spec.gen_len,
        "tp": spec.tp,
        "runtime": req.runtime.name,
        "fusion": req.fusion,
        "precision": p.as_dict(),
        "routing": spec.routing.label if spec.model.n_experts else None,
        "seed": spec.routing.seed if spec.model.n_experts and spec.routing.kind != "file"
        else None,
        "prefetch_depth": req.prefetch_depth,
        "overlap": req.overlap,
        "params": spec.model.n_params,
        "machine_balance": cost.matmul_rate(mm_dtype, hier.compute, req.runtime)
        / (home.sustained_bytes_per_s * req.runtime.memory_efficiency),
    }


def provenance(req: Request, command_line: Sequence[str] | None = None) -> dict[str, Any]:
    """What produced a result: memwall's version, the hierarchy file (name, path, sha256 of
    its bytes) and the overrides applied to it, the runtime file likewise, the workload's
    source, the routing trace's (path, sha256; None without one), the fusion, and the command
    line (None from Python)."""
    h, w, r, trace = req.hierarchy, req.workload, req.runtime, req.spec.routing.trace
    return {
        "memwall_version": memwall_version(),
        "hierarchy": h.name,
        "hierarchy_path": os.path.abspath(h.path) if h.path else None,
        "hierarchy_sha256": h.sha256 or None,
        "overrides": list(h.overrides),
        "runtime": r.name,
        "runtime_path": os.path.abspath(r.path) if r.path else None,
        "runtime_sha256": r.sha256 or None,
        "runtime_overrides": list(r.overrides),
        "workload": w.name,
        "workload_path": w.path,
        "workload_sha256": w.sha256,
        "routing_path": trace.path if trace is not None else None,
        "routing_sha256": trace.sha256 if trace is not None else None,
        "fusion": req.fusion,
        "command_line": list(command_line) if command_line is not None else None,
    }


def _columns(recs: list[OpRecord], levels: list[str]) -> dict[str, np.ndarray]:
    """Records as flat columns: one per field, per-level fields split as 'stall_s.hbm'."""
    out: dict[str, np.ndarray] = {}
    n = len(levels)
    for name, col in zip(OpRecord._fields, zip(*recs, strict=True) if recs else
                         [()] * len(OpRecord._fields), strict=True):
        f = FIELD[name]
        if f.per_level:
            block = np.array(col, dtype=np.float64 if f.dtype == "float64" else np.int64)
            block = block.reshape(len(recs), n)
            for i, level in enumerate(levels):
                out[f"{name}.{level}"] = block[:, i]
        elif f.lookup:
            out[name] = np.array(col, dtype=object)
        else:
            out[name] = np.array(col)
    return out
