"""What raw timings say: medians, the cache knee of a bandwidth sweep, latency plateaus and
the GEMM fit (sustained peak per precision and the output tile). Pure numpy, no GPU.

Tolerances, checked by tests/test_measure_analysis.py on synthetic curves with 5% lognormal
noise (seeded): a knee within 10% of the planted capacity once `refine_sizes` has added its
points (within one grid step, 41%, before), plateaus within 5%, the planted GEMM tile
recovered and peaks within 5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.cost import wave_factor

#: candidate GEMM output tiles (M, N, K): those of cuBLAS and CUTLASS kernels on Ampere/Hopper
TILES: tuple[tuple[int, int, int], ...] = tuple(
    (m, n, k) for m in (64, 128, 256) for n in (64, 128, 256) for k in (32, 64, 128))
COMPUTE_M = 1024  # GEMMs with at least this many rows are compute-bound on every shape
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}  # bytes per element; the order
# is the hierarchy files' (fp32 first) and of every per-dtype result


@dataclass(frozen=True)
class Stats:
    """Median and spread of repeated timings (s)."""

    median: float
    p10: float
    p90: float
    n: int


def stats(samples: Sequence[float]) -> Stats:
    """Median, 10th and 90th percentile of `samples` (seconds, all > 0)."""
    a = np.asarray(samples, dtype=float)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"timings {list(samples)!r}: expected finite positive seconds")
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return Stats(float(med), float(p10), float(p90), int(a.size))


def _smooth(y: np.ndarray) -> np.ndarray:
    """Running median of three (the ends kept): one noisy point never makes a crossing."""
    if y.size < 3:
        return y.copy()
    mid = np.median(np.stack([y[:-2], y[1:-1], y[2:]]), axis=0)
    return np.concatenate([y[:1], mid, y[-1:]])


@dataclass(frozen=True)
class Knee:
    """Where a bandwidth sweep falls from a cache plateau to the memory behind it."""

    capacity_bytes: float  # working set at the log-midpoint between the two plateaus
    cache_bytes_per_s: float  # plateau below the knee
    memory_bytes_per_s: float  # plateau above it (sizes >= 8x the knee)
    below: float  # the two sampled sizes that bracket the crossing (bytes)
    above: float


def find_knee(sizes: Sequence[float], rates: Sequence[float],
              min_ratio: float = 1.3) -> Knee | None:
    """The cache knee of a sweep of working-set `sizes` (bytes) and `rates` (bytes/s), or None
    when the two plateaus differ by less than `min_ratio` (no cache in front of memory shows).

    On the running median of log(rate): the cache plateau is the median of the three highest
    points, the memory plateau the median of the three largest sizes; the knee is the first
    size past the peak where the curve falls below the midpoint of the two (in log), linearly
    interpolated in log(size) between the bracketing points.
    """
    order = np.argsort(np.asarray(sizes, dtype=float))
    x = np.log(np.asarray(sizes, dtype=float)[order])
    raw = np.asarray(rates, dtype=float)[order]
    if x.size < 6:
        return None
    y = _smooth(np.log(raw))
    hi = float(np.median(np.sort(y)[-3:]))
    lo = float(np.median(y[-3:]))
    if hi - lo < math.log(min_ratio):
        return None
    mid = (hi + lo) / 2
    peak = int(np.argmax(y))
    below = np.nonzero(y[peak:] < mid)[0]
    if below.size == 0:
        return None
    j = peak + int(below[0])
    f = (y[j - 1] - mid) / (y[j - 1] - y[j])
    capacity = math.exp(x[j - 1] + f * (x[j] - x[j - 1]))
    far = raw[np.exp(x) >= 8 * capacity]
    memory = float(np.median(far)) if far.size >= 2 else math.exp(lo)
    return Knee(capacity, math.exp(hi), memory, math.exp(x[j - 1]), math.exp(x[j]))


def refine_sizes(knee: Knee, points: int = 4) -> list[int]:
    """Working sets to add between the two sizes that bracket a knee, evenly in log, so a
    second `find_knee` places it within a fifth of the grid step."""
    a, b = math.log(knee.below), math.log(knee.above)
    return [int(round(math.exp(a + (b - a) * i / (points + 1)) / 4096)) * 4096
            for i in range(1, points + 1)]


def plateau(sizes: Sequence[float], values: Sequence[float], lo: float,
            hi: float) -> float | None:
    """Median of `values` whose size lies in [lo, hi]; None when no size does."""
    s, v = np.asarray(sizes, dtype=float), np.asarray(values, dtype=float)
    sel = v[(s >= lo) & (s <= hi)]
    return float(np.median(sel)) if sel.size else None


def latency_windows(l1_per_unit_bytes: float, knee_bytes: float
                    ) -> dict[str, tuple[float, float]]:
    """Working-set windows of a one-thread pointer chase that hit each level: L1 (the chase
    runs on one SM, so its own L1) up to a quarter of it; L2 from 4x one SM's L1 to half the
    L2 knee; HBM from 8x to 64x the knee (far enough for LRU misses, short of the TLB reach
    that larger sets add)."""
    return {"l1": (0.0, l1_per_unit_bytes / 4),
            "l2": (4 * l1_per_unit_bytes, knee_bytes / 2),
            "hbm": (8 * knee_bytes, 64 * knee_bytes)}


@dataclass(frozen=True)
class GemmPoint:
    dtype: str
    m: int
    n: int
    k: int
    seconds: float

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    @property
    def bytes(self) -> int:  # each operand read once, the output written once
        return (self.m * self.k + self.k * self.n + self.m * self.n) * BYTES[self.dtype]


@dataclass(frozen=True)
class GemmFit:
    tile: tuple[int, int, int]
    peaks: dict[str, float]  # sustained FLOP/s per dtype at full waves (wave-corrected)
    best: dict[str, float]  # highest FLOP/s measured per dtype, uncorrected
    error: float  # median |predicted / measured - 1| over the points scored
    scored: int  # points whose compute time dominates (where the tile matters)
    runner_up: tuple[tuple[int, int, int], float] | None  # next-best tile and its error


def fit_gemm(points: Sequence[GemmPoint], units: int, memory_bytes_per_s: float,
             tiles: Sequence[tuple[int, int, int]] = TILES) -> GemmFit | None:
    """Fit memwall's wave model (sim.cost.wave_factor) to a GEMM sweep: for each candidate
    tile, the peak per dtype is the median wave-corrected rate (FLOPs x waves / seconds) of
    the compute-bound points (M >= COMPUTE_M: under the right tile these are all the same
    rate, so the median is unbiased by noise, where a maximum would not be); each point is
    predicted as max(FLOPs x waves / peak, bytes / memory bandwidth); the tile with the
    smallest median |log error| over the points whose compute time is at least twice their
    memory time (or, with fewer than three of those, the M >= COMPUTE_M points) wins. None
    without any compute-bound point."""
    big = [p for p in points if p.m >= COMPUTE_M]
    if not big:
        return None
    best = {d: max(p.flops / p.seconds for p in points if p.dtype == d)
            for d in BYTES if any(p.dtype == d for p in points)}
    results = []
    for tile in tiles:
        peaks = {}
        for d in [d for d in BYTES if any(p.dtype == d for p in big)]:
            peaks[d] = float(np.median([p.flops * _waves(p, units, tile) / p.seconds
                                        for p in big if p.dtype == d]))
        scored = [p for p in points if p.dtype in peaks and p.flops * _waves(p, units, tile)
                  / peaks[p.dtype] >= 2 * p.bytes / memory_bytes_per_s]
        if len(scored) < 3:  # memory dominates everything: judge by the compute-bound end
            scored = big
        errs = [abs(math.log(max(p.flops * _waves(p, units, tile) / peaks[p.dtype],
                                 p.bytes / memory_bytes_per_s) / p.seconds)) for p in scored]
        results.append((float(np.median(errs)), tile, peaks, len(errs)))
    if not results:
        return None
    results.sort(key=lambda r: r[0])
    err, tile, peaks, scored = results[0]
    runner = (results[1][1], math.expm1(results[1][0])) if len(results) > 1 else None
    return GemmFit(tile, peaks, best, math.expm1(err), scored, runner)


def _waves(p: GemmPoint, units: int, tile: tuple[int, int, int]) -> float:
    return wave_factor((1, p.m, p.n, p.k), units, tile)


def gemv_bandwidth(points: Sequence[GemmPoint], min_bytes: float) -> float | None:
    """Median bytes/s of the M = 1 GEMMs (matrix-vector products) that move at least
    `min_bytes` (the timer streams every operand from memory; small ones are launch-bound)."""
    bw = [p.bytes / p.seconds for p in points if p.m == 1 and p.bytes >= min_bytes]
    return float(np.median(bw)) if bw else None
