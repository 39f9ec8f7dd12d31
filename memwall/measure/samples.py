"""The raw figures of a measurement: one flat record per timed case, and measurements.csv.

Benches and what `work` counts (per timed unit, so rate = work / median_s):
    stream   bytes moved in one pass (read, write, copy)    rate in bytes/s
    l1       bytes read                                      bytes/s
    chase    1 (seconds are per dependent load)              loads/s
    vector   FLOPs of fp32 multiply chains                  FLOP/s
    launch   1 (seconds are per kernel; eager, graph)        kernels/s
    gemm     FLOPs of the product                            FLOP/s
    decode   batch (tokens made by one step)                 tokens/s
    prefill  batch x prompt tokens                           tokens/s
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sim.outfile import write_text

from .analysis import Stats, stats

UNITS = {"stream": "B/s", "l1": "B/s", "chase": "loads/s", "vector": "FLOP/s",
         "launch": "kernels/s", "gemm": "FLOP/s", "decode": "tokens/s", "prefill": "tokens/s"}


class Sample(NamedTuple):
    bench: str  # a key of UNITS
    stats: Stats  # seconds per timed unit
    work: float  # see the module docstring
    variant: str = ""  # read, write, copy; eager, graph
    model: str = ""  # decode, prefill: the workload as models.csv names it
    dtype: str = ""
    working_set_bytes: int = 0
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 0
    tokens: int = 0  # decode: positions cached; prefill: prompt tokens

    @property
    def rate(self) -> float:
        return self.work / self.stats.median


COLUMNS = ("bench", "variant", "model", "dtype", "working_set_bytes", "m", "n", "k", "batch",
           "tokens", "samples", "median_s", "p10_s", "p90_s", "work", "rate", "rate_unit")


def sample(bench: str, seconds: Sequence[float], work: float, **keys: object) -> Sample:
    """A Sample of repeated timings `seconds` (the median is what counts)."""
    return Sample(bench, stats(seconds), float(work), **keys)  # type: ignore[arg-type]


def select(samples: Iterable[Sample], bench: str, **keys: object) -> list[Sample]:
    """The samples of `bench` whose fields equal `keys`."""
    return [s for s in samples if s.bench == bench
            and all(getattr(s, k) == v for k, v in keys.items())]


def csv_text(samples: Iterable[Sample]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for s in samples:
        w.writerow([s.bench, s.variant, s.model, s.dtype, s.working_set_bytes, s.m, s.n, s.k,
                    s.batch, s.tokens, s.stats.n, f"{s.stats.median:.6g}",
                    f"{s.stats.p10:.6g}", f"{s.stats.p90:.6g}", f"{s.work:.6g}",
                    f"{s.rate:.6g}", UNITS[s.bench]])
    return out.getvalue()


def write_csv(samples: Iterable[Sample], path: str) -> None:
    """measurements.csv, whole or not at all."""
    write_text(path, csv_text(samples))


def read_csv(path: str) -> list[Sample]:
    """The Samples of a measurements.csv (medians and percentiles as written)."""
    with open(path, newline="") as f:
        return [Sample(r["bench"], Stats(float(r["median_s"]), float(r["p10_s"]),
                                         float(r["p90_s"]), int(r["samples"])),
                       float(r["work"]), r["variant"], r["model"], r["dtype"],
                       int(r["working_set_bytes"]), int(r["m"]), int(r["n"]), int(r["k"]),
                       int(r["batch"]), int(r["tokens"]))
                for r in csv.DictReader(f)]
