"""Engine speed: prints figures, asserts nothing (timing checks never run as unit tests).

    python bench/bench_engine.py              # issue 18's figures, medians of 3
    python bench/bench_engine.py --quick      # shorter runs, for a smoke check
    python bench/bench_engine.py --repeat 5   # medians of 5 runs
    python bench/bench_engine.py --fusion none  # one kernel per op (default: each file's)
    python bench/bench_engine.py --before     # also the per-op analytic engine it replaced

Each figure is the median wall time of --repeat runs, printed beside a bare SimPy loop of one
million timeouts measured in the same process, so the ratio travels across machines. The
runs: gpt2 x 1,024 tokens and llama2-70b x 4,096 tokens (prompt 1), each engine; the two
peer points of issue 18, in-process with imports done (llama2-7b on an A100, 128 + 128;
llama2-70b at TP 4 on A100s, 2048 + 256); and the whole process of `memwall --version`,
`-h` and a 1-token run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simpy  # noqa: E402

import memwall  # noqa: E402
from memwall import simulation  # noqa: E402
from sim import analytic  # noqa: E402

PER_OP = "analytic-per-op"  # sim.analytic._simulate_per_op: the analytic engine before issue 18


def bare_simpy(n: int = 1_000_000) -> float:
    env = simpy.Environment()

    def loop(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1e-9)

    env.process(loop(env))
    t = time.perf_counter()
    env.run()
    return time.perf_counter() - t


def one_run(model: str, hier: str, gen_len: int, engine: str, fusion: str | None,
            prompt_len: int = 1, tp: int = 1) -> tuple[float, int, str]:
    """Seconds, op executions and fusion of one run (imports done); `engine` may be PER_OP."""
    req = memwall.request(model, hier, prompt_len=prompt_len, gen_len=gen_len,
                          engine="analytic" if engine == PER_OP else engine, fusion=fusion,
                          tp=tp)
    engines = simulation.ENGINES
    kept = engines["analytic"]
    if engine == PER_OP:
        engines["analytic"] = analytic._simulate_per_op
    try:
        t = time.perf_counter()
        r = memwall.run(req)
        return time.perf_counter() - t, r.n_ops, r.fusion
    finally:
        engines["analytic"] = kept


def process_s(*argv: str) -> float:
    """Wall seconds of a whole `python run.py ARGV` process (its output discarded)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "run.py"), *argv], check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--before", action="store_true",
                    help=f"also time {PER_OP}, the analytic engine before issue 18")
    ap.add_argument("--fusion", choices=("none", "fused"), default=None,
                    help="kernel fusion (default: each hierarchy file's)")
    args = ap.parse_args()
    # (label, model, hierarchy, prompt, tokens, tp, engines); llama2-70b in bf16 needs the
    # tiered DRAM on one device
    engines = ("des", "analytic", *((PER_OP,) if args.before else ()))
    cases = [("gpt2", "hbm_accel.yaml", 1, 1024, 1, engines),
             ("llama2-70b", "hbm_accel_tiered.yaml", 1, 4096, 1, engines),
             ("llama2-7b", "a100_80gb.yaml", 128, 128, 1, engines),  # peer point
             ("llama2-70b", "a100_80gb.yaml", 2048, 256, 4, engines)]  # peer point
    if args.quick:
        cases = [("gpt2", "hbm_accel.yaml", 1, 128, 1, engines),
                 ("llama2-70b", "hbm_accel_tiered.yaml", 1, 32, 1, engines)]
    simpy_s = statistics.median(bare_simpy() for _ in range(args.repeat))
    print(f"bare SimPy, 1e6 timeouts: {simpy_s:.2f} s (median of {args.repeat})")
    for model, hier, prompt, gen, tp, names in cases:
        for engine in names:
            times, n_ops, fusion = [], 0, ""
            for _ in range(args.repeat):
                dt, n_ops, fusion = one_run(model, hier, gen, engine, args.fusion, prompt, tp)
                times.append(dt)
            med = statistics.median(times)
            print(f"{model:<11} {prompt:>5}+{gen:<5} tp {tp} on {hier:<22} {fusion:<5} "
                  f"{engine:<16}{med:8.3f} s  {med / n_ops * 1e6:5.1f} us/op  {n_ops:>8} ops  "
                  f"{med / simpy_s:6.3f} x bare SimPy")
    for argv in (["--version"], ["-h"],
                 ["--workload", "gpt2", "--hier", "hbm_accel.yaml", "--prompt-len", "1",
                  "--gen-len", "1", "--engine", "analytic"]):
        med = statistics.median(process_s(*argv) for _ in range(args.repeat))
        print(f"whole process: memwall {' '.join(argv):<78} {med:6.3f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
