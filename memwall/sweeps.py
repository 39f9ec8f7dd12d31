"""Design sweeps: every point of a sweep file, on Dask distributed, resumable.

    memwall sweep sweeps/l2_vs_bandwidth.yaml --out out/l2 [--workers N]
                                              [--scheduler tcp://HOST:PORT]

Points are resolved and checked in the client (a bad value fails fast naming its line), run on
an embedded LocalCluster (N worker processes, one thread each) or an existing cluster, and each
finished point is written atomically to DIR/points/<key>.json as its future completes; <key> is
the sha256 of the fully resolved configuration and the memwall version, so a rerun skips
finished points. DIR/results.csv, DIR/sweep.png and the verdict are rebuilt from the point
files.

    >>> import memwall
    >>> out = memwall.sweep("sweeps/tiered_dram.yaml", "out/tiered")  # doctest: +SKIP
    >>> out.rows[0]["decode_s_per_token"]                             # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim import Hierarchy, MemwallError, apply_overrides, hierarchy_to_dict, load_hierarchy
from sim.errors import cut
from sim.opgraph import DTYPES
from sim.outfile import check_target, memwall_version
from sim.runtime_file import runtime_to_dict

from . import bundled
from .inputs import RUNTIME_PREFIX, Request, as_runtime, request
from .progress import Progress
from .serving import sweep as serving_sweep
from .simulation import run
from .sweep_file import (
    SERVE_SETTINGS,
    SETTINGS,
    Axis,
    SweepError,
    SweepFile,
    Value,
    WorkloadEntry,
    read_sweep,
)
from .sweep_results import (
    Row,
    build_table,
    failures,
    mark_front,
    plot,
    read_point,
    verdict,
    write_csv,
    write_point,
)

CONNECT_TIMEOUT = "20s"  # to reach an existing scheduler


@dataclass(frozen=True)
class Point:
    """One simulation of the sweep: a workload on one design, resolved (or failed) up front."""

    run: dict[str, Any]  # RUN_COLUMNS and swept paths -> values as written
    key: str  # sha256 of the resolved configuration
    task: Request | serving_sweep.ServeTask | None  # a simulation, or a serving run
    error: str = ""  # set if the design does not resolve (a bad combination of overrides)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep produced (all of it also in `out`): the table's columns and rows, one per
    point finished so far, the verdict text, and how many points are not finished."""

    out: Path
    columns: list[str]
    rows: list[Row]
    verdict: str
    points: int  # in the sweep
    missing: int  # not finished (rerun to complete them)
    ran: int = 0  # points finished by this call (the others were finished before it)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)

    @property
    def failures(self) -> list[tuple[str, int]]:
        """Each error of the failed points and how many points it failed, most first."""
        return failures(self.rows)

    @property
    def plotted(self) -> bool:
        """Whether out/sweep.png was drawn (not when every point failed)."""
        return any(r["status"] == "ok" for r in self.rows)


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    return x


def _key(config: dict[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def resolve(sweep: SweepFile) -> list[Point]:
    """Every point of `sweep`; raises SweepError (file:line) for a bad base, workload or value.

    Each swept value is checked alone first (an override on the base hierarchy or runtime, a
    run setting as the flags take it), so a typo fails now with its line; each workload
    entry is checked once on the base design. A combination that does not resolve (a
    tensor-parallel degree a model cannot split, overrides that contradict) is a point that
    failed, with its one-line error."""
    base = load_hierarchy(_base_path(sweep))
    if sweep.objectives and base.energy is None:
        raise SweepError(f"{sweep.objectives_where}: objectives: {', '.join(sweep.objectives)} "
                         f"need energy figures, and the base {sweep.base} has none; expected "
                         "a base with an energy section (hierarchies/README.md)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        requests = [_request(e, base, sweep) for e in sweep.workloads]
        for axis in sweep.axes:
            for v in axis.values:
                _check_value(axis, v, requests[0])
        if sweep.serve is not None:
            serving_sweep.check(sweep.workloads[0], base, sweep)
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(message, UserWarning, stacklevel=2)
    version = memwall_version()
    points = []
    for entry, first in zip(sweep.workloads, requests, strict=True):
        for combo in sweep.combinations():
            settings, texts, wheres = _design(entry, sweep, combo)
            if sweep.serve is not None:
                row, config, task, error = serving_sweep.point(entry, base, sweep, combo,
                                                                texts, wheres, version)
                points.append(Point(row, _key(config), task, error))
                continue
            row = {"workload": entry.workload, **{k: settings[k] for k in RUN_SETTINGS},
                   "runtime": settings["runtime"] or "", "routing": None, "seed": None,
                   "engine": sweep.engine, "prefetch_depth": sweep.prefetch_depth}
            row.update({a.path: v.text for a, v in zip(sweep.axes, combo, strict=True)
                        if not a.is_setting})  # a swept setting is in the row, typed
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    req = request(first.workload, base, engine=sweep.engine,
                                  prefetch_depth=sweep.prefetch_depth, overrides=texts,
                                  override_origins=wheres, **settings)
            except MemwallError as e:
                design = {"base": _hier_dict(base), "overrides": texts, "settings": settings}
                config = {"memwall": version, "design": design, "engine": sweep.engine}
                points.append(Point(row, _key(config), None, str(e).splitlines()[0]))
                continue
            spec, p, r = req.spec, req.spec.precision, req.spec.routing
            row.update(weight_dtype=p.weights, act_dtype=p.activations, kv_dtype=p.kv_cache,
                       runtime=req.runtime.name,
                       routing=r.label if spec.model.n_experts else None,
                       seed=r.seed if spec.model.n_experts else None)
            points.append(Point(row, _key(_config(req, version)), req))
    return points


RUN_SETTINGS = ("batch", "prompt_len", "gen_len", "weight_dtype", "act_dtype", "kv_dtype", "tp")
_INTS = ("batch", "prompt_len", "gen_len", "tp")


def _setting(axis: Axis, v: Value) -> Any:
    """A swept run setting's value as memwall.request takes it (checked there)."""
    return v.setting(axis.path, axis.path in _INTS, SETTINGS.get(axis.path, ""))


def _design(entry: WorkloadEntry, sweep: SweepFile, combo: tuple[Value, ...]
            ) -> tuple[dict[str, Any], list[str], list[str]]:
    """(run settings, override texts, their origins) of one workload entry on one combo."""
    settings: dict[str, Any] = {**entry.settings(), "runtime": sweep.runtime}
    texts, wheres = [], []
    for axis, v in zip(sweep.axes, combo, strict=True):
        if axis.is_setting:
            settings[axis.path] = _setting(axis, v)
        else:
            texts.append(f"{axis.path}={v.text}")
            wheres.append(v.where)
    return settings, texts, wheres


def _check_value(axis: Axis, v: Value, first: Request) -> None:
    """One swept value alone on the base design: refused now, with its line, if bad."""
    if axis.path in SERVE_SETTINGS:  # serving_sweep.check tries these
        return
    try:
        if axis.path == "runtime":
            as_runtime(v.text, first.hierarchy)
        elif axis.is_setting:  # its type only: whether a model takes it is each point's
            value = _setting(axis, v)
            low = 0 if axis.path == "gen_len" else 1
            if axis.path in _INTS and value < low or axis.path.endswith("_dtype") \
                    and value not in DTYPES:
                raise SweepError(f"{v.where}: {axis.path}: {cut(v.text)!r}; expected "
                                 f"{SETTINGS[axis.path]}")
        elif axis.path.startswith(RUNTIME_PREFIX):
            first.runtime.source.rebuild([f"{axis.path[len(RUNTIME_PREFIX):]}={v.text}"],
                                         [v.where])
        else:
            apply_overrides(first.hierarchy, [f"{axis.path}={v.text}"], [v.where])
    except SweepError:
        raise
    except MemwallError as e:
        message = str(e)
        raise SweepError(message if message.startswith(v.where) else
                         f"{v.where}: {axis.path}: {message}") from None


def _config(req: Request, version: str) -> dict[str, Any]:
    """What a point's key hashes: everything that decides its result, nothing else."""
    spec, p, r = req.spec, req.spec.precision, req.spec.routing
    run_cfg = {"model": _plain(spec.model), "batch": spec.batch, "prompt_len": spec.prompt_len,
               "gen_len": spec.gen_len, "tp": spec.tp,
               "precision": [p.weights, p.activations, p.kv_cache, p.embeddings],
               "routing": [r.label, r.seed, r.trace.sha256 if r.trace else None]}
    return {"memwall": version, "hierarchy": _hier_dict(req.hierarchy),
            "runtime": runtime_to_dict(req.runtime), "run": run_cfg, "engine": req.engine,
            "overlap": req.overlap}


def _request(entry: Any, base: Hierarchy, sweep: SweepFile) -> Request:
    try:
        return request(entry.workload, base, engine=sweep.engine, runtime=sweep.runtime,
                       prefetch_depth=sweep.prefetch_depth, **entry.settings())
    except MemwallError as e:
        raise SweepError(f"{entry.where}: workload {entry.workload}: {e}") from None


def _base_path(sweep: SweepFile) -> Path:
    names = [sweep.base] if sweep.base.endswith((".yaml", ".yml")) else [f"{sweep.base}.yaml"]
    here = Path(sweep.path).resolve().parent
    dirs = (here, bundled.folder("hierarchies"))
    for d in (*dirs, Path.cwd()):
        for name in names:
            if (d / name).is_file():
                return d / name
    looked = ", ".join(str(d) for d in dirs)
    raise SweepError(f'{sweep.base_where}: base: "{sweep.base}" not found (looked in {looked} '
                     "and the current directory); expected a hierarchy such as hbm_accel.yaml")


def _hier_dict(h: Hierarchy) -> dict[str, Any]:
    d = hierarchy_to_dict(h)
    d.pop("path", None)  # where the file lies does not change the result
    return d


def run_point(req: Request | serving_sweep.ServeTask,
              command_line: Sequence[str] | None = None) -> dict[str, Any]:
    """One simulation (or serving run) on a worker: {"status", "error", "summary",
    "elapsed_s"}; never raises for bad input, so one point that does not fit does not stop
    the others."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = (req.run(command_line) if isinstance(req, serving_sweep.ServeTask)
                       else run(req, command_line=command_line).to_dict())
    except MemwallError as e:
        return {"status": "error", "error": str(e).splitlines()[0], "summary": None,
                "elapsed_s": time.perf_counter() - t0}
    except Exception as e:  # a bug in one point: record it, keep the sweep going
        text = f"{type(e).__name__}: {e}".splitlines()[0]
        return {"status": "error", "error": text, "summary": None,
                "elapsed_s": time.perf_counter() - t0}
    return {"status": "ok", "error": "", "summary": summary,
            "elapsed_s": time.perf_counter() - t0}


def execute(points: Sequence[Point], out_dir: Path, workers: int, scheduler: str | None,
            on_done: Callable[[bool], None],
            command_line: Sequence[str] | None = None) -> int:
    """Run `points` on Dask, writing each point file as it completes; returns points lost
    (a worker died too often, the cluster went away), which a rerun will retry."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        else:
            cluster = LocalCluster(n_workers=max(1, min(workers, len(points))),
                                   threads_per_worker=1, processes=True,
                                   # ":0": any free port, so a cluster already on Dask's
                                   # 8787 costs no warning (None still tries 8787)
                                   dashboard_address=":0", silence_logs=logging.ERROR)
            client = Client(cluster)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise SweepError(f"--scheduler {scheduler}: cannot connect: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    lost = 0
    try:
        futures = {client.submit(run_point, p.task, command_line, key=f"memwall-point-{p.key}",
                                 pure=False): p
                   for p in points if p.task is not None}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                result = fut.result()
            except Exception:  # KilledWorker, cancelled: not the point's fault; rerun it
                lost += 1
                on_done(False)
                continue
            write_point(out_dir, p.key, _record(p, result))
            on_done(result["status"] == "ok")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return lost


def _record(p: Point, result: dict[str, Any]) -> dict[str, Any]:
    return {"key": p.key, "memwall_version": memwall_version(), "run": p.run, **result}


def sweep(path: str | os.PathLike[str], out: str | os.PathLike[str],
          workers: int | None = None, scheduler: str | None = None,
          progress: bool | None = None,
          command_line: Sequence[str] | None = None) -> SweepResult:
    """`memwall.sweep`: run every point of the sweep file `path` not yet in `out` (on
    `workers` local processes, default one per core, or the Dask cluster at `scheduler`),
    then rebuild out/results.csv and out/sweep.png from the point files. `progress`: a line
    on stderr as points finish (default: only when stderr is a terminal)."""
    workers = os.cpu_count() or 1 if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"--workers {workers}: expected an integer >= 1")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: not a directory; expected a results directory")
    if scheduler is not None:
        _check_address(scheduler)
    sw = read_sweep(path)
    points = resolve(sw)
    (out / "points").mkdir(parents=True, exist_ok=True)
    with _owned(out):
        return _sweep(sw, points, out, workers, scheduler, progress, command_line)


LOCK_NAME = ".memwall-sweep.lock"  # in --out: held (flock) by the sweep writing there


@contextmanager
def _owned(out: Path) -> Iterator[None]:
    """Hold out/LOCK_NAME for the sweep's whole run, so that a second sweep on the same --out
    is refused at once instead of computing every point again; the lock goes with the
    process (a killed sweep holds nothing)."""
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise SweepError(f"--out {out}: another sweep (process {owner}) is writing there; "
                             "expected one sweep per directory (wait for it, or use another "
                             "--out)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _sweep(sw: SweepFile, points: list[Point], out: Path, workers: int,
           scheduler: str | None, progress: bool | None,
           command_line: Sequence[str] | None) -> SweepResult:
    check_target(out / "results.csv", "--out")
    before = {p.key for p in points if read_point(out, p.key) is not None}
    for p in points:  # designs that do not resolve are finished points too
        if p.task is None and read_point(out, p.key) is None:
            write_point(out, p.key, _record(p, {"status": "error", "error": p.error,
                                                "summary": None, "elapsed_s": 0.0}))
    todo = list({p.key: p for p in points if read_point(out, p.key) is None}.values())
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        print(f"sweep: {len(points)} points, {len(todo)} to run, {len(points) - len(todo)} "
              f"already done -> {out}", file=sys.stderr)
    if todo:
        bar = Progress(len(todo)) if show else None
        try:
            execute(todo, out, workers, scheduler, bar or (lambda ok: None), command_line)
        finally:
            if bar is not None:
                bar.close()
    res = report(sw, points, out)
    return dataclasses.replace(res, ran=len({r["key"] for r in res.rows} - before))


def _check_address(address: str) -> None:
    """Refuse a scheduler address that no Dask transport can parse, before any work."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import backends

    wanted = "expected an address such as tcp://HOST:8786"
    try:
        scheme, location = parse_address(address)
        if scheme not in backends:
            raise ValueError(f"unknown scheme {scheme!r}")
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, _, port = location.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"port {port!r} is not a number in 1..65535" if host else
                                 "no HOST:PORT")
            parse_host_port(location)
    except (ValueError, TypeError) as e:
        raise SweepError(f"--scheduler {cut(address)}: {str(e).splitlines()[0]}; "
                         f"{wanted}") from None


def report(sw: SweepFile, points: Sequence[Point], out: Path) -> SweepResult:
    """Rebuild results.csv and sweep.png from the point files."""
    pairs = [(p.run, rec) for p in points if (rec := read_point(out, p.key)) is not None]
    columns, rows = build_table(pairs, sw.swept_paths)
    axes = {a.path: [v.text for v in a.values] for a in sw.axes}
    if sw.serve is not None:
        write_csv(out / "results.csv", columns, rows)
        if any(r["status"] == "ok" for r in rows):
            serving_sweep.plot(out / "sweep.png", rows, axes, sw.serve,
                               f"memwall sweep of {sw.path}")
        text = serving_sweep.verdict(rows, axes)
    else:
        columns = mark_front(columns, rows, axes, sw.objectives)
        write_csv(out / "results.csv", columns, rows)
        if any(r["status"] == "ok" for r in rows):
            plot(out / "sweep.png", rows, axes, f"memwall sweep of {sw.path}", sw.objectives)
        text = verdict(rows, axes, objectives=sw.objectives)
    return SweepResult(out, columns, rows, text, len(points), len(points) - len(rows))
