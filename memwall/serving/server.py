"""A serving run: requests arrive, a scheduler batches them iteration by iteration, and every
iteration runs as an op graph on the device the main job simulates.

Two SimPy processes share one Environment with the device: `arrivals` puts each request into
a Store (the server's inbox) at its arrival time; `server` takes what has arrived, asks the
scheduler (schedulers.py) for the next iteration, runs its swaps and its op graph
(workloads/batch.py) on the device, and applies the outcome. The device keeps its memory system
for the whole run: weights homed once, the caches' contents carried from one iteration to the
next, the paged KV cache (kv_cache.py) homed in the first KV level in the room the weights and
the activation workspace leave, the swap area in the next. With the discrete-event engine an
iteration is a SimPy process on the device (sim.engine.Device); with the analytic one, the
per-op roofline (sim.analytic.AnalyticDevice) and a timeout of its length. Every op record goes
to one Summary, so every second the device ran is charged to compute, a level, dispatch or the
interconnect, as in the main job.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import simpy

from sim import AnalyticDevice, Device, EngineOptions, Memory, OpRecord, Summary, check_tp
from sim.errors import MemwallError
from sim.memory import activation_pool_bytes, tensor_footprint
from sim.opgraph import Tensor
from sim.outfile import check_target
from workloads.batch import BatchBuilder, Batches, Seq, serving_spec
from workloads.fusion import fuse

from ..simulation import provenance
from .kv_cache import PagedKVCache
from .result import ServeResult, build_result
from .schedulers import SCHEDULERS, Live, Plan, Scheduler
from .settings import ServeSpec, serve_spec

SWAP_AREA = "kv.swap_area"  # the tensor homed in the swap level
POOL = "kv.pool"  # KV blocks swapped back in land here (the first KV level)

ITERATION_COLUMNS = {  # the per-iteration table: column -> units
    "step": "index of the iteration's op graph among the phases run (the records' step)",
    "start_s": "s", "end_s": "s", "batch": "sequences run", "tokens": "tokens fed",
    "prefill_tokens": "prompt tokens fed", "decode": "sequences decoding one token",
    "kv_bytes": "bytes of KV blocks held while it ran", "waiting": "requests queued",
    "running": "sequences admitted (run or not)", "swapped": "sequences swapped out",
    "preempted": "sequences preempted before it",
}
REQUEST_COLUMNS = {
    "id": "request", "arrival_s": "s", "prompt_tokens": "tokens", "output_tokens": "tokens",
    "generated": "tokens generated", "scheduled_s": "s, first ran", "first_token_s": "s",
    "finish_s": "s, response complete",
    "ttft_s": "s", "tpot_s": "s (NaN: one output token)", "e2e_s": "s", "queue_s": "s",
    "preemptions": "times preempted",
}


@dataclass
class Outcome:
    """What a serving run produced, before it is summarised (result.py)."""

    spec: ServeSpec
    done: list[Live]
    iterations: dict[str, np.ndarray]  # ITERATION_COLUMNS -> column
    summary: dict[str, Any]  # the main job's summary of every op record
    kv: PagedKVCache
    swaps: int
    swap_bytes: int


class Server:
    """The device, the memory system and the scheduler of one serving run."""

    def __init__(self, spec: ServeSpec, sink: Callable[[OpRecord], None]) -> None:
        req = spec.run
        hier, rt = req.hierarchy, req.runtime
        options = EngineOptions(runtime=rt, overlap=req.overlap, tp=req.spec.tp)
        check_tp(hier, options.tp)
        self.spec, self.hier, self.sink = spec, hier, sink
        mspec = serving_spec(req.spec.model, req.spec.precision, req.spec.tp)
        self.batches = Batches(mspec, req.fusion)
        one = BatchBuilder(mspec, [Seq(1, 1, True, True)], 0).build()
        weights = {n: v for n, v in tensor_footprint(one).items() if v[0] == "weight"}
        per_token = {t.name: t.nbytes for _, a in one.nodes(data=True) for t in a["writes"]
                     if t.cls == "kv_cache"}  # KV bytes per position, per layer tensor
        self.kv_dtype = req.spec.precision.kv_cache
        self.mem = mem = Memory(hier, weights, _workspace(spec, mspec, req.fusion))
        self.kv = self._paged(mem, per_token)
        if req.engine == "des":
            self.env = simpy.Environment()
            dev = Device(self.env, hier, mem, options)
            self.run_phase: Callable[[nx.DiGraph], Any] = lambda G: dev.run_phase(G, sink)
        else:
            self.env = simpy.Environment()
            adev = AnalyticDevice(hier, mem, options)

            def analytic(G: nx.DiGraph):  # SimPy process body
                yield self.env.timeout(adev.run_phase(G, sink, self.env.now) - self.env.now)

            self.run_phase = analytic
        self.sched: Scheduler = SCHEDULERS[spec.scheduler](self.kv, spec.max_seqs,
                                                           spec.max_tokens, spec.preempt)
        self.inbox = simpy.Store(self.env)
        self.steps = 0  # phases run
        self.swaps = self.swap_bytes = 0
        self.rows: dict[str, list[float]] = {c: [] for c in ITERATION_COLUMNS}
        self.done: list[Live] = []

    def _paged(self, mem: Memory, per_token: dict[str, int]) -> PagedKVCache:
        """The paged KV cache in the room the first KV level has left; the swap area in the
        next, when preemption swaps. Homes the layers' KV tensors at the cache's size."""
        spec, hier = self.spec, self.hier
        names = [lv.name for lv in hier.levels]
        order = hier.placement.kv_cache
        k0 = names.index(order[0])
        block_bytes = sum(per_token.values()) * spec.kv_block
        blocks = mem.free[k0] // block_bytes
        if blocks < 1:
            raise MemwallError(
                f"{hier.name}: no room for a KV block in {order[0]}: "
                f"{mem.free[k0] / 1e9:.3g} GB free after the weights and the activation "
                f"workspace, a block of {spec.kv_block} positions takes {block_bytes} bytes; "
                "expected a device with more memory (--set), fewer bytes (--weight-dtype, "
                "--kv-dtype) or more devices (--tp)")
        for name, b in per_token.items():
            mem.place(name, k0, blocks * spec.kv_block * b)
        mem.place(POOL, k0, 0)
        swap_blocks = 0
        if spec.preempt == "swap":
            if len(order) < 2:
                raise MemwallError(
                    f"--preempt swap: {hier.name} keeps the KV cache in {order[0]} only "
                    f"(placement.kv_cache: [{', '.join(order)}]); expected a second level to "
                    "swap to, or --preempt recompute")
            k1 = names.index(order[1])
            swap_blocks = mem.free[k1] // block_bytes
            mem.place(SWAP_AREA, k1, swap_blocks * block_bytes)
            self.swap_level = k1
        self.pool_level = k0
        kv = PagedKVCache(spec.kv_block, block_bytes, int(blocks), int(swap_blocks))
        for a in spec.arrivals:
            need = kv.blocks_for(a.prompt_tokens + a.output_tokens - 1)
            if need > kv.blocks:
                raise MemwallError(
                    f"request {a.id} (prompt {a.prompt_tokens}, output {a.output_tokens} "
                    f"tokens) needs {need} KV blocks; {hier.name} holds {kv.blocks} "
                    f"({kv.capacity_bytes / 1e9:.3g} GB in {order[0]}); expected shorter "
                    "requests or more memory")
        return kv

    # -- the processes ----------------------------------------------------------------------
    def arrivals(self):
        env, last = self.env, len(self.spec.arrivals) - 1
        for i, a in enumerate(self.spec.arrivals):
            if a.arrival_s > env.now:
                yield env.timeout(a.arrival_s - env.now)
            if i == last:
                self.sched.arrivals_done = True
            yield self.inbox.put(a)

    def server(self, progress: Callable[[int], None] | None):
        env, sched, inbox = self.env, self.sched, self.inbox
        total = len(self.spec.arrivals)
        while len(self.done) < total:
            while inbox.items:
                sched.arrive((yield inbox.get()))
            plan = sched.plan()
            if plan is None:
                sched.arrive((yield inbox.get()))
                continue
            if plan.swap_out:
                yield from self._swap(plan.swap_out, out=True)
            if plan.swap_in:
                yield from self._swap(plan.swap_in, out=False)
            if not plan.run:
                continue
            start = env.now
            seqs = [Seq(t, s.cached + t, s.cached + t >= s.context, s.prefilling)
                    for s, t in plan.run]
            for s, _ in plan.run:
                if s.scheduled_s is None:
                    s.scheduled_s = start
            self._row(plan, seqs, start)
            yield from self.run_phase(self.batches.graph(seqs, self.steps))
            self.steps += 1
            finished = sched.finish(plan, env.now)
            self.rows["end_s"].append(env.now)
            self.done.extend(finished)
            if progress is not None and finished:
                progress(len(finished))

    def _row(self, plan: Plan, seqs: Sequence[Seq], start: float) -> None:
        s, r = self.sched, self.rows
        for k, v in (("step", self.steps), ("start_s", start), ("batch", len(seqs)),
                     ("tokens", sum(x.tokens for x in seqs)),
                     ("prefill_tokens", sum(x.tokens for x in seqs if x.prefill)),
                     ("decode", sum(not x.prefill for x in seqs)),
                     ("kv_bytes", self.kv.used_bytes), ("waiting", len(s.waiting)),
                     ("running", len(s.running)), ("swapped", len(s.swapped)),
                     ("preempted", plan.preemptions)):
            r[k].append(v)

    def _swap(self, moved: list[tuple[Live, int]], out: bool):
        """Copy preempted sequences' KV blocks to the swap level (out) or back: one kernel
        reading them where they are and writing them to the other level."""
        nbytes = sum(b for _, b in moved)
        self.swaps += len(moved)
        self.swap_bytes += nbytes
        src = self.pool_level if out else self.swap_level
        name = f"kv.{'out' if out else 'in'}.{self.steps}"
        self.mem.place(name, src, 0)
        read = Tensor(name, "kv_cache", (nbytes,), "int8", nbytes)
        write = Tensor(SWAP_AREA if out else POOL, "kv_cache", (nbytes,), "int8", nbytes)
        G = nx.DiGraph(phase="swap", step=self.steps, batch=len(moved), tokens=0, kv_len=0)
        G.add_node("kv_swap_out" if out else "kv_swap_in", kind="vector", op="kv_swap",
                   layer=-1, flops=0, dtype="int8", reads=(read,), writes=(write,))
        yield from self.run_phase(G)
        self.steps += 1

    def run(self, progress: bool = False) -> Outcome:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.spec.arrivals), unit="request", delay=2.0,
                       file=sys.stderr, leave=False)
        self.env.process(self.arrivals())
        self.env.process(self.server(bar.update if bar is not None else None))
        try:
            self.env.run()
        finally:
            if bar is not None:
                bar.close()
        if len(self.done) != len(self.spec.arrivals):  # a scheduler that stalls is a bug
            raise RuntimeError(f"serving stopped with {len(self.done)} of "
                               f"{len(self.spec.arrivals)} requests done")
        cols = {c: np.asarray(v) for c, v in self.rows.items()}
        return Outcome(self.spec, sorted(self.done, key=lambda s: s.id), cols, {}, self.kv,
                       self.swaps, self.swap_bytes)


def _workspace(spec: ServeSpec, mspec: Any, fusion: str) -> int:
    """Activation bytes the largest op of any iteration the run can make reads and writes: the
    room kept for activations before the weights and the KV cache are homed. Bounded by an
    iteration of the most tokens one can feed (the budget, or the longest contexts of
    --max-seqs requests, whichever is fewer), each sequence at the longest context, and by a
    decode of --max-seqs sequences at it."""
    contexts = sorted((a.prompt_tokens + a.output_tokens - 1 for a in spec.arrivals),
                      reverse=True)  # a recomputed prefill covers the tokens made too
    longest, most = contexts[0], sum(contexts[:spec.max_seqs])
    if spec.scheduler == "static":
        n = sum(sorted((a.prompt_tokens for a in spec.arrivals), reverse=True)[:spec.max_seqs])
    elif spec.scheduler == "chunked":
        n = spec.max_tokens
    else:  # a prompt longer than the budget runs alone
        n = max(min(spec.max_tokens, most), longest)
    T = min(n, longest)
    worst = [[Seq(T, longest, True, True)] * math.ceil(n / T),
             [Seq(1, longest, True, False)] * min(spec.max_seqs, len(spec.arrivals))]
    pool = 0
    for seqs in worst:
        G = BatchBuilder(mspec, seqs, 0).build()
        pool = max(pool, activation_pool_bytes(G if fusion == "none" else fuse(G)[0]))
    return pool


def serve(workload: Any, hierarchy: Any, *, trace: str | os.PathLike[str] | None = None,
          progress: bool = False, command_line: Sequence[str] | None = None,
          **settings: Any) -> ServeResult:
    """Serve requests of `workload` on `hierarchy` (as memwall.simulate takes them).

    Requests: `requests` (default 100) arriving as a Poisson process of `rate` requests/s
    (a number, or "inf": all at time 0) with `seed` (0), lengths `prompt_len` and `gen_len`
    (a count, "uniform:LOW:HIGH" or "lognormal:MEAN:SIGMA"); or `requests_file` (CSV). The
    scheduler: "continuous" (default), "chunked" (or chunked_prefill=TOKENS) or "static";
    max_seqs (256), max_batched_tokens (the model's positions, at least 2048; chunked: 512),
    kv_block (16 positions), preempt ("recompute" or "swap"); slo_ttft and slo_tpot (s) give
    goodput. The other keywords are simulate's (engine, runtime, fusion, weight_dtype,
    kv_dtype, tp, overrides, ...). `trace` writes the op records and the per-request and
    per-iteration tables to an HDF5 file.

    >>> import memwall
    >>> r = memwall.serve("gpt2", "hbm_accel", requests=4, rate=100, prompt_len=16, gen_len=4)
    >>> r.completed, r.ttft_s["p50"] > 0, r.bound_by
    (4, True, 'hbm')
    """
    if trace is not None:
        check_target(trace, "trace")
    return run_serve(serve_spec(workload, hierarchy, **settings), trace=trace,
                     progress=progress, command_line=command_line)


def run_serve(spec: ServeSpec, *, trace: str | os.PathLike[str] | None = None,
              progress: bool = False, command_line: Sequence[str] | None = None
              ) -> ServeResult:
    """Run a checked serving run (settings.serve_spec): every op record to the summary (and
    the trace), the result computed from them and from the requests' times."""
    run = spec.run
    summary = Summary(run.hierarchy, run.runtime.memory_efficiency)
    writer = None
    sink: Callable[[OpRecord], None] = summary.add
    prov = provenance(run, command_line)
    if trace is not None:
        from sim.trace_file import TraceWriter

        writer = TraceWriter(trace, run.hierarchy, list(command_line or ()), prov,
                             runtime=run.runtime)
        add, wadd = summary.add, writer.add

        def sink(r: OpRecord) -> None:
            add(r)
            wadd(r)

    with writer or nullcontext():
        outcome = Server(spec, sink).run(progress)
        outcome.summary = summary.result({})
        result = build_result(outcome, prov)
        if writer is not None:
            writer.finish(result.to_dict(), tables={
                "requests": (result.requests_table, REQUEST_COLUMNS),
                "iterations": (result.iterations_table, ITERATION_COLUMNS)})
    return result
