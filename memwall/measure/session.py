"""One measurement: every stage of the plan timed within a budget, then the analysis and files.

Stages run in the order a hierarchy needs them (launch, streams, L1 and vector rate, pointer
chase, GEMMs, then the model runs); each gets a share of the time left, and a stage whose
share is spent stops between two cases, so `--budget-s` always ends with files written from
what was measured. measurements.csv is rewritten after every stage, whatever happens after.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import workloads
from sim.outfile import write_text
from sim.units import format_quantity as q

from .analysis import find_knee, refine_sizes
from .calibration import Calibration, calibrate, for_device
from .plan import (
    MODEL_PRESETS,
    PROFILE,
    ModelRun,
    chase_sizes,
    gemm_plan,
    gemm_shapes,
    hf_config,
    model_runs,
    resident_config,
    run_bytes,
    stream_sizes,
    twin_layers,
    with_positions,
)
from .samples import Sample, sample, select, write_csv
from .timer import STREAMS, MeasureError, Timer, cuda_timer
from .writer import model_rows, write_config, write_hierarchies, write_models, write_profile

SHARES = {"launch": 0.02, "stream": 0.18, "l1": 0.03, "chase": 0.07, "gemm": 0.30,
          "models": 0.40}  # of the budget; a stage's share grows with what earlier ones left
MEMORY_SHARE = 0.85  # a model run that needs more of the device's memory is skipped


@dataclass
class Progress:
    """What one stage did: cases planned and timed, and whether the budget stopped it."""

    planned: int = 0
    done: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class Measurement:
    out: Path
    calibration: Calibration | None
    samples: list[Sample]
    files: list[Path]
    progress: dict[str, Progress]
    seconds: float
    skipped: list[str] = field(default_factory=list)  # model runs that did not fit
    errors: list[str] = field(default_factory=list)  # first of each error (errors.log)

    def summary(self) -> str:
        return _summary(self)


class _Session:
    def __init__(self, timer: Timer, budget_s: float, clock: Callable[[], float],
                 stages: Sequence[str], log: Callable[[str], None], csv_path: Path) -> None:
        self.timer, self.clock, self.log, self.csv_path = timer, clock, log, csv_path
        self.start, self.budget = clock(), budget_s
        self.samples: list[Sample] = []
        self.progress = {s: Progress() for s in stages}
        self.skipped: list[str] = []
        self.errors: dict[str, list] = {}  # message, numbers as N -> [count, first, traceback]
        self.deadline = self.start
        self.stage, self.began = "", self.start
        self.current = Progress()

    def begin(self, stage: str, planned: int) -> None:
        """Start `stage`: its deadline is its share of the time left, by SHARES."""
        self.finish()
        begun = list(self.progress)[:list(self.progress).index(stage)]
        rest = [s for s in self.progress if s not in begun]
        left = max(0.0, self.start + self.budget - self.clock())
        self.began = self.clock()
        self.deadline = self.began + left * SHARES[stage] / sum(SHARES[s] for s in rest)
        self.stage, self.current = stage, self.progress[stage]
        self.current.planned = planned

    def finish(self) -> None:
        """End the current stage: log it, and rewrite measurements.csv with all so far (so a
        run killed later still leaves every finished stage's figures)."""
        if self.stage:
            write_csv(self.samples, str(self.csv_path))
            p = self.current
            self.log(f"  {self.stage}: {p.done} of {p.planned} cases in "
                     f"{self.clock() - self.began:.1f} s" + (" (budget spent)" if p.stopped
                                                              else ""))
            self.stage = ""

    def more(self) -> bool:
        """True while the stage may time another case."""
        if self.clock() > self.deadline:
            self.current.stopped = True
            return False
        return True

    def time(self, bench: str, call: Callable[[], Any], work: float | None = None,
             **keys: object) -> Sample | None:
        """Time one case: `call()` gives the samples (or, with `work` None, (work, samples));
        None when the case cannot run here or raised. An error is logged once (numbers in its
        message aside) and kept for errors.log, and the stage goes on with its next case."""
        self.current.done += 1
        try:
            got = call()
        except Exception as err:  # one failing case must not lose the rest of the run
            first = f"{bench}: {type(err).__name__}: {err}".splitlines()[0][:300]
            key = re.sub(r"\d+", "N", first)  # one entry for the same error at many sizes
            if key not in self.errors:
                self.errors[key] = [0, first, traceback.format_exc()]
                self.log(f"  {first} (traceback in errors.log)")
            self.errors[key][0] += 1
            return None
        if work is None and got is not None:
            work, got = got
        if got is None:
            return None
        s = sample(bench, got, work, **keys)
        self.samples.append(s)
        return s

    def error_log(self) -> str:
        return "".join(f"{n} x {first}\n{tb}\n" for n, first, tb in self.errors.values())


def run(out: str | Path, *, models: bool | Sequence[str] = False, budget_s: float = 300.0,
        timer: Timer | None = None, clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = None) -> Measurement:
    """Measure the first CUDA device (or `timer`) within `budget_s` seconds and write
    DIR/measurements.csv, hierarchy.yaml, runtime_eager.yaml, runtime_graphs.yaml, and with
    `models` (True: the default presets, or a list of decoder presets) models.csv,
    profile.csv and l2_resident.json; errors.log if a case failed. MeasureError when a
    hierarchy cannot be made; the raw figures are written first."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MeasureError(f"--out {out}: not a directory; expected an output directory")
    names = list(MODEL_PRESETS if models is True else models or ())
    for name in names:
        if workloads.preset(name).arch != "decoder":
            raise MeasureError(f"--models {name}: an encoder; expected decoder presets")
    if not budget_s > 0:
        raise MeasureError(f"--budget-s {budget_s}: expected a positive number of seconds")
    timer = timer or cuda_timer()
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda line: None)
    stages = [s for s in SHARES if s != "models" or models]
    files = [out / "measurements.csv"]
    ses = _Session(timer, budget_s, clock, stages, log, files[0])
    dev = timer.device
    log(f"memwall measure: {dev.name}, {dev.units} SMs, {dev.software}; budget {budget_s:g} s")
    _launch(ses)
    _streams(ses)
    _l1_vector(ses)
    _chase(ses)
    _gemm(ses)
    timed: list[tuple[ModelRun, Sample]] = []
    if models:
        timed = _models(ses, names, out, files)
    ses.finish()
    date = datetime.date.today().isoformat()
    if timed:
        files.append(out / "models.csv")
        write_models(model_rows(timed, dev.name, dev.software, date), str(files[-1]))
    if ses.errors:
        files.append(out / "errors.log")
        write_text(files[-1], ses.error_log())
    try:
        cal = calibrate(ses.samples, dev, for_device(dev.name))
    except MeasureError as err:
        cut = [s for s, p in ses.progress.items() if p.stopped]
        why = f"; the budget stopped {', '.join(cut)} (raise --budget-s)" if cut else ""
        why += f"; {len(ses.errors)} kinds of case failed (errors.log)" if ses.errors else ""
        raise MeasureError(f"{err}{why}; wrote {', '.join(str(f) for f in files)}") from None
    files[1:1] = [Path(p) for p in write_hierarchies(cal, str(out), date)]
    return Measurement(out, cal, ses.samples, files, ses.progress, clock() - ses.start,
                       ses.skipped, [first for _, first, _ in ses.errors.values()])


def _launch(ses: _Session) -> None:
    ses.begin("launch", 2)
    for variant in ("eager", "graph"):
        if ses.more():
            ses.time("launch", lambda v=variant: ses.timer.launch(v == "graph"), 1,
                     variant=variant)


def _streams(ses: _Session) -> None:
    sizes = stream_sizes(ses.timer.device.memory_bytes)
    ses.begin("stream", len(sizes) * len(STREAMS) + 4)
    for kind in STREAMS:
        for size in sizes:
            if not ses.more():
                return
            ses.time("stream", lambda k=kind, n=size: ses.timer.stream(k, n), size,
                     variant=kind, working_set_bytes=size)
        if kind == "read":
            reads = select(ses.samples, "stream", variant="read")
            knee = find_knee([s.working_set_bytes for s in reads], [s.rate for s in reads])
            for size in refine_sizes(knee) if knee else ():
                if ses.more():
                    ses.time("stream", lambda n=size: ses.timer.stream("read", n), size,
                             variant="read", working_set_bytes=size)


def _l1_vector(ses: _Session) -> None:
    ses.begin("l1", 2)
    if ses.more():
        ses.time("l1", ses.timer.l1_read, variant="read")
    if ses.more():
        ses.time("vector", ses.timer.vector, dtype="fp32")


def _chase(ses: _Session) -> None:
    sizes = chase_sizes(ses.timer.device.memory_bytes)
    ses.begin("chase", len(sizes))
    for size in sizes:
        if not ses.more():
            return
        ses.time("chase", lambda n=size: ses.timer.chase(n), 1, working_set_bytes=size)


def _gemm(ses: _Session) -> None:
    cases = gemm_plan(gemm_shapes())
    ses.begin("gemm", len(cases))
    for dtype, m, n, k in cases:
        if not ses.more():
            return
        ses.time("gemm", lambda c=(dtype, m, n, k): ses.timer.gemm(*c), 2 * m * n * k,
                 dtype=dtype, m=m, n=n, k=k)


def _models(ses: _Session, names: list[str], out: Path, files: list[Path]
            ) -> list[tuple[ModelRun, Sample]]:
    """The L2-resident model and its twin (sized by the read sweep's knee), then `names`."""
    dev = ses.timer.device
    reads = select(ses.samples, "stream", variant="read")
    knee = find_knee([s.working_set_bytes for s in reads], [s.rate for s in reads])
    l2 = knee.capacity_bytes if knee else dev.l2_bytes
    todo: list[tuple[workloads.ModelConfig, str, int | None]] = []
    if l2:
        resident = resident_config(l2)
        files.append(out / "l2_resident.json")
        write_config(hf_config(resident), str(files[-1]))
        twin = twin_layers(resident, l2)
        todo += [(resident, "l2_resident.json", None),
                 (dataclasses.replace(resident, n_layers=twin), "l2_resident.json", twin)]
    todo += [(workloads.preset(n), n, None) for n in names]
    runs = model_runs(todo)
    ses.begin("models", len(runs))
    timed: list[tuple[ModelRun, Sample]] = []
    profiled = False
    for r in runs:
        if not ses.more():
            break
        label = f"{r.name} {r.phase} b{r.batch} {r.length}{' graph' if r.graph else ''}"
        if run_bytes(r) > MEMORY_SHARE * dev.memory_bytes:
            ses.current.done += 1
            ses.skipped.append(f"{label}: needs {run_bytes(r) / 1e9:.1f} GB")
            continue
        if not profiled and r.workload in names and r.phase == "prefill":
            profiled = True  # after the first preset's decode runs: one step, kernel by kernel
            batch, kv = PROFILE
            try:
                write_profile(ses.timer.profile(with_positions(r.model, kv + 1), batch, kv),
                              str(out / "profile.csv"))
                files.append(out / "profile.csv")
            except Exception as err:  # the profile is a by-product; the runs go on
                ses.log(f"  profile: {type(err).__name__}: {err}")
        if r.phase == "decode":
            def call(r: ModelRun = r) -> list[float] | None:
                return ses.timer.decode(r.model, r.batch, r.length, r.graph)
        else:
            def call(r: ModelRun = r) -> list[float] | None:
                return ses.timer.prefill(r.model, r.batch, r.length)
        s = ses.time(r.phase, call, r.batch * (1 if r.phase == "decode" else r.length),
                     variant="graph" if r.graph else "eager", model=r.name, batch=r.batch,
                     tokens=r.length)
        if s is None:
            ses.skipped.append(f"{label}: did not run (out of memory, or errors.log)")
        else:
            timed.append((r, s))
    return timed


def _summary(m: Measurement) -> str:
    lines = []
    c = m.calibration
    if c is not None:
        d = c.device
        lines.append(f"memwall measure: {d.name}, {d.units} SMs, {q(d.memory_bytes, 'size')} "
                     f"({d.software}), {m.seconds:.0f} s")
        for lv in c.levels:
            eff = f" x {lv.efficiency.value}" if lv.efficiency else ""
            lat = (f"{lv.latency.value} cycles" if lv.latency.kind == "cycles"
                   else q(float(lv.latency.value), "time"))
            lines.append(f"  {lv.name:<10} {q(float(lv.capacity.value), 'size'):>10}  "
                         f"{q(float(lv.bandwidth.value), 'bandwidth'):>11}{eff:<8}  latency {lat}")
        peaks = ", ".join(f"{k} {q(float(f.value), 'rate')}" for k, f in c.peaks.items())
        lines.append(f"  GEMM peaks {peaks}; tile {list(c.tile.value) if c.tile else None}")
        lines.append(f"  dispatch eager {q(float(c.dispatch.value), 'time')}, graph "
                     f"{q(float(c.dispatch_graph.value), 'time')}")
        lines += [f"  not measured: {n}" for n in c.notes]
    for stage, p in m.progress.items():
        if p.stopped:
            lines.append(f"  budget: {stage} stopped after {p.done} of {p.planned} cases")
    lines += [f"  skipped {s}" for s in m.skipped]
    lines += [f"  failed {e}" for e in m.errors]
    lines.append("wrote " + ", ".join(str(f) for f in m.files))
    return "\n".join(lines)
