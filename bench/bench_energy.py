"""Published inference energy (validation/energy.csv) against memwall's prediction.

    python bench/bench_energy.py [--engine des] [--decode-samples 16]

Prints, per row, the measured figure, the prediction and the error (prediction / measured - 1),
then the mean absolute percentage error per metric. Nothing here is fitted: every figure is
the bundled hierarchy's and runtime's as shipped. Decode steps are sampled (sim/sampling.py)
to keep the run short; --decode-samples 0 runs them all.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import memwall  # noqa: E402

ROWS = Path(__file__).resolve().parents[1] / "validation" / "energy.csv"
METRICS = ("joules_per_token", "average_power_w")  # RunResult fields the rows measure


def rows(path: Path = ROWS) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predict(row: dict[str, str], engine: str = "des", decode_samples: int | None = 16
            ) -> float:
    """memwall's figure for one row of validation/energy.csv (its `metric`, in its `unit`)."""
    if row["metric"] not in METRICS:
        raise ValueError(f"{row['id']}: metric {row['metric']!r}; expected one of {METRICS}")
    r = memwall.simulate(
        row["workload"], row["hier"], batch=int(row["batch"]),
        prompt_len=int(row["prompt_len"]), gen_len=int(row["gen_len"]), tp=int(row["tp"]),
        weight_dtype=row["weight_dtype"], act_dtype=row["weight_dtype"],
        kv_dtype=row["weight_dtype"], runtime=row["runtime"], engine=engine,
        decode_samples=decode_samples or None)
    return getattr(r, row["metric"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="des", choices=("des", "analytic"))
    ap.add_argument("--decode-samples", type=int, default=16)
    args = ap.parse_args()
    errors: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    print(f"{'row':<36} {'metric':<17} {'measured':>9} {'memwall':>9}  error")
    for row in rows():
        got = predict(row, args.engine, args.decode_samples)
        measured = float(row["measured"])
        err = got / measured - 1
        errors.setdefault(row["metric"], []).append(abs(err))
        print(f"{row['id']:<36} {row['metric']:<17} {measured:>9.4g} {got:>9.4g}  "
              f"{100 * err:+6.1f}%  {row['unit']}")
    for metric, errs in errors.items():
        print(f"MAPE {metric}: {100 * statistics.mean(errs):.1f}% over {len(errs)} rows")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
