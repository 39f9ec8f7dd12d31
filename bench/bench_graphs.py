"""How long the engine waits for op graphs: every decode-step graph of a run, per step.

    python bench/bench_graphs.py [--repeats 5]

Prints medians over the repeats: producing all decode-step graphs through
workloads.phases (one template updated in place), a fresh build_phase for comparison, and
the whole-run counts of workloads.run_counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from workloads import PRESETS, RunSpec, build_phase, phases, run_counts  # noqa: E402

CASES = (  # (preset, prompt_len, decode steps)
    ("llama2-70b", 1, 4095),  # 4096 positions: the most its max_position_embeddings allow
    ("gpt2", 1, 1023),  # GPT-2's 1024 learned positions allow 1023 decode steps after 1
)


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'workload':12s}{'steps':>7s}{'nodes':>7s}{'all steps s':>13s}{'per step ms':>13s}"
          f"{'fresh build ms':>16s}{'run_counts s':>14s}")
    for name, prompt, steps in CASES:
        spec = RunSpec(PRESETS[name], prompt_len=prompt, gen_len=steps + 1)
        def decode_all(spec: RunSpec = spec) -> None:
            it = phases(spec)
            next(it)  # the prefill is not a decode step
            for _ in it:
                pass

        total = _median_s(decode_all, args.repeats)
        fresh = _median_s(lambda spec=spec, k=steps // 2: build_phase(spec, k), args.repeats)
        counts = _median_s(lambda spec=spec: run_counts(spec), args.repeats)
        nodes = build_phase(spec, 1).number_of_nodes()
        print(f"{name:12s}{steps:7d}{nodes:7d}{total:13.3f}{1e3 * total / steps:13.3f}"
              f"{1e3 * fresh:16.2f}{counts:14.3f}")


if __name__ == "__main__":
    main()
