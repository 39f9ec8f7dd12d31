"""memwall serve against published serving measurements (validation/serving.csv): prints the
prediction, the measurement and the error of each row, and the mean absolute error of the rows
no runtime figure was fitted to apart from those that were (column fitted_by: the entry of
validation/calibration.yaml that fitted a figure to the same measurement).

    python bench/serve_published.py [--engine analytic] [--only ID-PREFIX]

How a row runs: its requests all arrive at time 0 with --max-seqs at its concurrency (a
closed loop of that many clients with no think time; a static batch for the static rows), its
lengths fixed, on the row's hierarchy, runtime and split. The figure compared:
    request_s               the last response (one llm.generate of the batch, vLLM's
                            benchmark_latency)
    throughput_tokens_per_s requests x output tokens / the last response (a static batch)
    ttft_s                  the median TTFT
    tpot_s                  the mean TPOT (NIM's ITL is an average over tokens)
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import memwall  # noqa: E402
from memwall import bundled  # noqa: E402


def rows() -> list[dict[str, str]]:
    with open(bundled.folder("validation") / "serving.csv", newline="") as f:
        return list(csv.DictReader(f))


_RUNS: dict[tuple, memwall.ServeResult] = {}  # rows of one run (TTFT and TPOT) share it


def predict(row: dict[str, str], engine: str) -> float:
    n, out = int(row["requests"]), int(row["gen_len"])
    dtype = row["weight_dtype"]
    kw = dict(requests=n, rate="inf", prompt_len=int(row["prompt_len"]), gen_len=out,
              max_seqs=int(row["concurrency"]), scheduler=row["scheduler"],
              max_batched_tokens=int(row["max_batched_tokens"] or 0) or None,
              runtime=row["runtime"], weight_dtype=dtype, act_dtype=dtype,
              kv_dtype=row["kv_dtype"], tp=int(row["devices"]), engine=engine)
    key = (row["workload"], row["hier"], *sorted(kw.items()))
    if key not in _RUNS:
        _RUNS[key] = memwall.serve(row["workload"], row["hier"], **kw)
    r = _RUNS[key]
    metric = row["metric"]
    if metric == "request_s":
        return r.e2e_s["max"]
    if metric == "throughput_tokens_per_s":
        return n * out / r.e2e_s["max"]
    if metric == "ttft_s":
        return r.ttft_s["p50"]
    if metric == "tpot_s":
        return r.tpot_s["mean"]
    raise ValueError(f"{row['id']}: metric {metric!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("des", "analytic"), default="des")
    ap.add_argument("--only", default="", help="rows whose id starts with this")
    args = ap.parse_args()
    errors: dict[bool, list[float]] = {False: [], True: []}  # fitted -> |errors|
    print(f"{'row':<52} {'predicted':>10} {'measured':>10} {'error':>8} {'time':>7}")
    for row in rows():
        if not row["id"].startswith(args.only):
            continue
        t = time.perf_counter()
        got = predict(row, args.engine)
        want = float(row["value"])
        err = (got - want) / want
        fitted = row["fitted_by"]
        errors[bool(fitted)].append(abs(err))
        print(f"{row['id']:<52} {got:>10.4g} {want:>10.4g} {100 * err:>+7.1f}% "
              f"{time.perf_counter() - t:>6.1f}s" + (f"  (fitted: {fitted})" if fitted else ""),
              flush=True)
    for fitted, label in ((False, "held out"), (True, "fitted to (in-sample)")):
        e = errors[fitted]
        if e:
            print(f"mean absolute error {100 * sum(e) / len(e):.1f}% over {len(e)} rows {label}")


if __name__ == "__main__":
    main()
