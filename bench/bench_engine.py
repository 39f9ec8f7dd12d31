"""Engine speed: prints figures, asserts nothing (timing checks never run as unit tests).

    python bench/bench_engine.py              # gpt2 x 1024 tokens, llama2-70b x 4096 tokens
    python bench/bench_engine.py --quick      # shorter runs, for a smoke check
    python bench/bench_engine.py --repeat 5   # medians of 5 runs
    python bench/bench_engine.py --fusion none  # one kernel per op (default: each file's)

Each figure is the median wall time of --repeat runs, printed beside a bare SimPy loop of one
million timeouts measured in the same process, so the ratio travels across machines.
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

import simpy  # noqa: E402

import memwall  # noqa: E402


def bare_simpy(n: int = 1_000_000) -> float:
    env = simpy.Environment()

    def loop(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1e-9)

    env.process(loop(env))
    t = time.perf_counter()
    env.run()
    return time.perf_counter() - t


def one_run(model: str, hier: str, gen_len: int, engine: str, fusion: str | None
            ) -> tuple[float, int, str]:
    req = memwall.request(model, hier, prompt_len=1, gen_len=gen_len, engine=engine,
                          fusion=fusion)
    t = time.perf_counter()
    r = memwall.run(req)
    return time.perf_counter() - t, r.n_ops, r.fusion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fusion", choices=("none", "fused"), default=None,
                    help="kernel fusion (default: each hierarchy file's)")
    args = ap.parse_args()
    # (model, hierarchy, tokens, target seconds); llama2-70b in bf16 needs the tiered DRAM
    cases = [("gpt2", "hbm_accel.yaml", 1024, 1.5),
             ("llama2-70b", "hbm_accel_tiered.yaml", 4096, 60.0)]
    if args.quick:
        cases = [("gpt2", "hbm_accel.yaml", 128, None),
                 ("llama2-70b", "hbm_accel_tiered.yaml", 32, None)]
    simpy_s = statistics.median(bare_simpy() for _ in range(args.repeat))
    print(f"bare SimPy, 1e6 timeouts: {simpy_s:.2f} s (median of {args.repeat})")
    for model, hier, gen, target in cases:
        for engine in ("des", "analytic"):
            times, n_ops, fusion = [], 0, ""
            for _ in range(args.repeat):
                dt, n_ops, fusion = one_run(model, hier, gen, engine, args.fusion)
                times.append(dt)
            med = statistics.median(times)
            goal = f"  target < {target} s" if target and engine == "des" else ""
            print(f"{model:<11} {gen:>5} tokens on {hier:<22} {fusion:<5} {engine:<8} "
                  f"{med:7.2f} s  {med / n_ops * 1e6:5.1f} us/op  {n_ops:>8} ops  "
                  f"{med / simpy_s:5.2f} x bare SimPy{goal}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
