"""How well a sweep uses the cores: a 16-point sweep on 1 worker and on 2 workers, side by side.

    python bench/bench_sweep.py [--repeats 3] [--gen-len 128]

Each point is GPT-2 (prompt 16, gen_len tokens, DES) on hbm_accel with one of 16 L2 capacities.
Prints medians over the repeats of the wall time of the whole command path (cluster start,
points, table, plot) and of the points alone (first submit to last point file), the speedup of
2 workers over 1 (goal >= 1.7x on a 2-core machine), and the per-point overhead: wall time per
point on 1 worker minus the bare simulate_run time of the same point in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from memwall import sweeps  # noqa: E402
from memwall.simulation import run  # noqa: E402

N_POINTS = 16


def _sweep_text(gen_len: int) -> str:
    caps = ", ".join(f'"{50 + 8 * i} MiB"' for i in range(N_POINTS))  # 16 distinct designs
    return (f"base: hbm_accel.yaml\nengine: des\nworkloads:\n"
            f"  - {{workload: gpt2, prompt_len: 16, gen_len: {gen_len}}}\n"
            f"grid:\n  memory.l2.capacity: [{caps}]\n")


def _run(path: Path, workers: int) -> tuple[float, float]:
    """(whole command, points alone: first submit to last point file) in s, fresh results."""
    from distributed import Client

    marks: dict[str, float] = {}
    submit, done = Client.submit, sweeps.Progress.__call__

    def timed_submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        marks.setdefault("submit", time.perf_counter())
        return submit(self, *args, **kwargs)

    def timed_done(self, ok):  # type: ignore[no-untyped-def]
        marks["done"] = time.perf_counter()
        return done(self, ok)

    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        Client.submit, sweeps.Progress.__call__ = timed_submit, timed_done
        t0 = time.perf_counter()
        try:
            res = sweeps.sweep(path, out, workers=workers, progress=True)
        finally:
            Client.submit, sweeps.Progress.__call__ = submit, done
        total = time.perf_counter() - t0
    if res.missing or res.failed:
        raise SystemExit(f"sweep with {workers} workers: {res.missing} points missing, "
                         f"{res.failed} failed")
    return total, marks["done"] - marks["submit"]


def _bare_s(path: Path) -> float:
    """Median time of the sweep's points run in this process, s."""
    points = sweeps.resolve(sweeps.read_sweep(path))
    times = []
    for p in points[:4]:
        t0 = time.perf_counter()
        run(p.task)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gen-len", type=int, default=128, help="tokens per point (default 128)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        path.write_text(_sweep_text(args.gen_len))
        runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        bares = []
        for _ in range(args.repeats):  # interleaved, so load drifts hit all alike
            bares.append(_bare_s(path))
            for workers in runs:
                runs[workers].append(_run(path, workers))
        bare = statistics.median(bares)
    med = {w: (statistics.median(t for t, _ in r), statistics.median(p for _, p in r))
           for w, r in runs.items()}
    print(f"{N_POINTS}-point sweep, GPT-2 prompt 16 gen {args.gen_len} DES, "
          f"medians of {args.repeats}")
    print(f"  bare run per point              {bare:8.3f} s")
    print(f"  {'':30s} {'command':>9s} {'points':>9s}")
    for w, (total, pts) in med.items():
        print(f"  {w} worker{'s' if w > 1 else ' '}                      "
              f"{total:8.2f} s {pts:8.2f} s")
    print(f"  speedup 2 vs 1 workers           {med[1][0] / med[2][0]:8.2f}x "
          f"{med[1][1] / med[2][1]:8.2f}x   (goal >= 1.7x)")
    over = med[1][1] / N_POINTS - bare
    print(f"  overhead per point (1 worker)    {over:8.3f} s  ({100 * over / bare:.0f}% of bare)")


if __name__ == "__main__":
    main()
