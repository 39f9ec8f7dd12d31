"""Serving speed: prints figures, asserts nothing (timing checks never run as unit tests).

    python bench/bench_serve.py               # the target run, then how time grows
    python bench/bench_serve.py --quick       # shorter runs, for a smoke check
    python bench/bench_serve.py --repeat 5    # medians of 5 runs

The target (issue 17): 1,000 requests of llama2-7b, prompt 512 and output 256 tokens, arriving
at 50 requests/s (three times what h100_sxm.yaml serves, so the queue grows and the batch stays
full), with the discrete-event engine in under 30 s; the analytic engine beside it. Then the
same with fewer requests (time against requests) and with --max-seqs 32 to 256 (time against
batch size). Each figure is the median of --repeat runs, printed beside a bare SimPy loop of
one million timeouts measured in the same process, so the ratio travels across machines, and
beside the CPU time of the process (on a machine other jobs share, wall time measures them too).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from bench_engine import bare_simpy  # noqa: E402

import memwall  # noqa: E402

RATE = 50.0  # requests/s: about 3x what llama2-7b at 512 + 256 tokens gets on h100_sxm


def one_run(requests: int, engine: str, max_seqs: int = 256, prompt: int = 512,
            output: int = 256, model: str = "llama2-7b", hier: str = "h100_sxm.yaml"
            ) -> tuple[float, memwall.ServeResult, float]:
    """(wall s, the result, CPU s) of one run."""
    t, c = time.perf_counter(), time.process_time()
    r = memwall.serve(model, hier, requests=requests, rate=RATE, prompt_len=prompt,
                      gen_len=output, engine=engine, max_seqs=max_seqs)
    return time.perf_counter() - t, r, time.process_time() - c


def line(label: str, times: list[float], r: memwall.ServeResult, simpy_s: float,
         goal: str = "", cpu: list[float] | None = None) -> str:
    med = statistics.median(times)
    used = f" (CPU {statistics.median(cpu):6.2f} s)" if cpu else ""
    return (f"{label:<34} {med:7.2f} s{used}  {r.iterations:>6} iterations "
            f"{med / r.iterations * 1e3:6.2f} ms/iteration  {r.n_ops:>8} ops "
            f"{med / r.n_ops * 1e6:5.1f} us/op  batch {r.batch_size_mean:6.1f}  "
            f"{med / simpy_s:5.2f} x bare SimPy{goal}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    memwall.serve("gpt2", "hbm_accel", requests=2, rate=1.0, gen_len=2)  # imports, warm
    simpy_s = statistics.median(bare_simpy() for _ in range(args.repeat))
    print(f"bare SimPy, 1e6 timeouts: {simpy_s:.2f} s (median of {args.repeat})", flush=True)
    n = 40 if args.quick else 1000
    for engine in ("des", "analytic"):
        runs = [one_run(n, engine, output=16 if args.quick else 256)
                for _ in range(args.repeat)]
        goal = "  target < 30 s" if engine == "des" and not args.quick else ""
        print(line(f"{n} requests, {engine}", [t for t, _, _ in runs], runs[0][1], simpy_s, goal,
                   [c for _, _, c in runs]), flush=True)
    print("time against requests (des, max 256 sequences)")
    for k in ((10, 20) if args.quick else (250, 500)):
        runs = [one_run(k, "des", output=16 if args.quick else 256)
                for _ in range(args.repeat)]
        print(line(f"  {k} requests", [t for t, _, _ in runs], runs[0][1], simpy_s,
                   cpu=[c for _, _, c in runs]), flush=True)
    print("time against batch size (des, 500 requests)")
    for seqs in ((4, 8) if args.quick else (32, 64, 128)):
        runs = [one_run(20 if args.quick else 500, "des", max_seqs=seqs,
                        output=16 if args.quick else 256) for _ in range(args.repeat)]
        print(line(f"  --max-seqs {seqs}", [t for t, _, _ in runs], runs[0][1], simpy_s,
                   cpu=[c for _, _, c in runs]), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
