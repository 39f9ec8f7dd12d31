"""What --trace costs: file size per op record and the slowdown of a traced run.

    python bench/bench_trace.py [--workload gpt2] [--gen-len 256] [--repeats 5]
                                [--stream-records 1000000]

Runs the same simulation untraced and traced, alternating, in one process, and prints the
median wall time of each, the slowdown, and the trace's bytes per op record. Then streams
synthetic records shaped like llama2-70b's (80 layers, 5 levels) through TraceWriter alone and
prints its time per record and the peak Python memory it held (tracemalloc), which stays
bounded by the chunk buffer whatever the record count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

import memwall  # noqa: E402
from sim import Level, OpRecord, TraceWriter  # noqa: E402


def timed_run(req: memwall.Request, trace: Path | None) -> float:
    t0 = time.perf_counter()
    memwall.run(req, trace=trace)
    return time.perf_counter() - t0


def synthetic(hier, n: int, out: Path, memory: bool) -> tuple[float, int]:
    """Stream n llama2-70b-like records through a writer: (s per record, peak bytes held if
    `memory`, measured with tracemalloc, which slows the run, so timing is a separate pass)."""
    names = [(f"l{i}.{op}", op, "matmul", i) for i in range(80)
             for op in ("norm", "qkv", "score", "softmax", "value", "out", "up", "gate", "down")]
    L = len(hier.levels)
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    with TraceWriter(out, hier) as w:
        t = 0.0
        for k in range(n):
            op, ty, kind, layer = names[k % len(names)]
            w.add(OpRecord(k // len(names), "decode", op, ty, kind, layer, t, t + 1e-5, 4e-6,
                           1e-7, 0.0, (0.0,) * (L - 1) + (5.9e-6,), (k * 4096,) * L, 2 ** 28,
                           2 ** 27, t + 4e-6, 0.0, (0,) * L, (0,) * L))
            t += 1e-5
        w.finish({})
    dt = time.perf_counter() - t0
    peak = 0
    if memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return dt / n, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="gpt2")
    ap.add_argument("--hier", default="hbm_accel.yaml")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stream-records", type=int, default=1_000_000,
                    help="synthetic records for the memory check (0 skips it)")
    args = ap.parse_args()
    req = memwall.request(args.workload, args.hier, prompt_len=args.prompt_len,
                          gen_len=args.gen_len)
    hier = req.hierarchy
    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / "bench.h5"
        timed_run(req, None)  # warm caches (graph templates, imports)
        plain, traced = [], []
        for _ in range(args.repeats):
            plain.append(timed_run(req, None))
            traced.append(timed_run(req, trace))
        n = memwall.run(req).n_ops
        size = trace.stat().st_size
        a, b = statistics.median(plain), statistics.median(traced)
        print(f"{args.workload} on {hier.name}, prompt {args.prompt_len}, gen {args.gen_len}: "
              f"{n} op records, median of {args.repeats}")
        paired = statistics.median(t / p for p, t in zip(plain, traced, strict=True))
        print(f"  untraced {a:8.3f} s   traced {b:8.3f} s   slowdown {100 * (b / a - 1):5.1f}% "
              f"(median of paired runs {100 * (paired - 1):5.1f}%)")
        print(f"  trace {size / 1e6:.2f} MB = {size / n:.1f} bytes per op record "
              f"({len(hier.levels)} levels)")
        if args.stream_records:
            big = Level("cxl", 2**40, 1e11, 5e-7)
            wide = hier.__class__(**{**hier.__dict__, "levels": hier.levels + (big,)})
            per, _ = synthetic(wide, args.stream_records, Path(d) / "synthetic.h5", False)
            _, peak = synthetic(wide, args.stream_records, Path(d) / "synthetic.h5", True)
            size = (Path(d) / "synthetic.h5").stat().st_size
            print(f"  writer alone, {args.stream_records} synthetic llama2-70b-like records "
                  f"({len(wide.levels)} levels): {per * 1e6:.2f} us per record, peak Python "
                  f"memory {peak / 1e6:.0f} MB, {size / args.stream_records:.1f} bytes per record")


if __name__ == "__main__":
    main()
