"""Peak resident memory of a run against its length, with and without --trace.

    python bench/bench_trace_memory.py [--workload llama2-7b] [--tokens 250,500,1000,2000]
                                       [--engine analytic] [--fusion none]

Each run is a fresh process (the peak, ru_maxrss, is per process); prints one row per length:
the op records, peak RSS untraced and traced, and the difference. A trace writer that holds
a bounded buffer shows a difference that does not grow with the tokens.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
import memwall
r = memwall.simulate({workload!r}, "hbm_accel", prompt_len=16, gen_len={tokens},
                     engine={engine!r}, fusion={fusion!r}, trace={trace!r})
print(r.n_ops, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak(workload: str, tokens: int, engine: str, fusion: str, trace: str | None
         ) -> tuple[int, float]:
    code = CHILD.format(root=str(ROOT), workload=workload, tokens=tokens, engine=engine,
                        fusion=fusion, trace=trace)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1]) / 1024  # ops, MiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="llama2-7b")
    ap.add_argument("--tokens", default="250,500,1000,2000")
    ap.add_argument("--engine", default="analytic", choices=("des", "analytic"))
    ap.add_argument("--fusion", default="none", choices=("none", "fused"))
    args = ap.parse_args()
    print(f"{args.workload}, prompt 16, {args.engine} engine, fusion {args.fusion}")
    print(f"{'tokens':>7} {'op records':>11} {'untraced MiB':>13} {'traced MiB':>11} "
          f"{'trace costs MiB':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in (int(t) for t in args.tokens.split(",")):
            n, plain = peak(args.workload, tokens, args.engine, args.fusion, None)
            _, traced = peak(args.workload, tokens, args.engine, args.fusion,
                             str(Path(tmp) / f"t{tokens}.h5"))
            print(f"{tokens:>7} {n:>11,} {plain:>13.0f} {traced:>11.0f} {traced - plain:>16.0f}")


if __name__ == "__main__":
    main()
