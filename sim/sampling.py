"""Sampled decode: run a few decode steps, each standing for the steps around it, with an
estimate of the error this makes against running them all.

Decode steps of one run differ only in the length of the KV cache (and the experts a router
picks), so the time of step t is a smooth function f(t) of t, bent only where a capacity is
crossed. A plan runs the first WARMUP steps (the caches settle), then splits the rest into
blocks of odd length and runs the middle step of each, which stands for its block (its
weight: the block's length; every total of the run is the weighted sum). That is the midpoint
rule: exact for a linear f, and off by f'' (t - c)^2 / 2 summed over the block otherwise.
The estimate of the error (`error_bound`) takes, per block of length L, the larger of
|f''| L (L^2 - 1) / 24, with f'' from the second difference of the samples around it, and
|d| L / 2, with d how far the block's sample lies off the line through its neighbours (a
change of level somewhere inside the block). A bend between two samples (a KV cache spilling
to the next tier) shows only as far as the samples straddle it, so the estimate is an
estimate, not a proof; tests check it against full runs. It bounds the run's time; the
per-level figures (bytes, stalls) are weighted the same way and err by as little. Skipped
steps still append their positions to the KV cache (sim.memory.Memory.begin_step), so every
sampled step reads and writes what it would in a full run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WARMUP = 8  # decode steps always run: the caches and the prefetch settle over the first few


@dataclass(frozen=True)
class Plan:
    """Which decode steps run, and how many steps each stands for."""

    steps: tuple[int, ...]  # decode steps that run, increasing (1 .. n)
    weights: Mapping[int, int]  # step -> the steps it stands for (itself included)
    blocks: tuple[tuple[int, int], ...]  # per sampled step past the warm-up: (first, last)

    @property
    def n_decode(self) -> int:
        return sum(self.weights.values())

    def weight(self, step: int) -> int:
        return self.weights.get(step, 1)


def plan(n_decode: int, samples: int | None) -> Plan | None:
    """The plan that runs `samples` of `n_decode` decode steps (steps 1 .. n_decode), or
    None when every step runs (samples None, or at least the steps there are)."""
    if samples is None or samples >= n_decode:
        return None
    if samples < WARMUP + 1:
        raise ValueError(f"decode samples = {samples}: expected at least {WARMUP + 1}")
    first = WARMUP + 1
    rest = n_decode - WARMUP  # steps first .. n_decode
    k = samples - WARMUP
    base = rest // k
    if base % 2 == 0:  # odd blocks have a middle step; the spare steps go two at a time
        base -= 1
    sizes = [base] * k
    spare = rest - base * k
    i = 0
    while spare >= 2:
        sizes[i % k] += 2
        spare -= 2
        i += 1
    if spare:  # one step left over: a last block of its own
        sizes.append(1)
    steps, weights, blocks = list(range(1, first)), {s: 1 for s in range(1, first)}, []
    at = first
    for size in sizes:
        mid = at + size // 2
        steps.append(mid)
        weights[mid] = size
        blocks.append((at, at + size - 1))
        at += size
    assert at == n_decode + 1, (n_decode, samples, sizes)
    return Plan(tuple(steps), weights, tuple(blocks))


def error_bound(p: Plan, step_s: Mapping[int, float]) -> float:
    """The estimated error (s) of the plan's total against a full run, from the times of the
    steps that ran (see the module docstring). Per block of length L, the larger of two
    terms: the midpoint rule's curvature term |f''| L (L^2 - 1) / 24, and a step term
    |d| L / 2, where d is how far the block's sample lies off the line through the samples
    beside it (a change of level inside the block, which no curvature shows)."""
    points = sorted((t, step_s[t]) for t in p.steps)
    at = {t: i for i, (t, _) in enumerate(points)}
    total = 0.0
    for a, b in p.blocks:
        mid, length = (a + b) // 2, b - a + 1
        i = at[mid]
        if len(points) < 3:
            continue
        lo, hi = (i - 1, i + 1) if 0 < i < len(points) - 1 else \
            ((i - 2, i - 1) if i > 0 else (i + 1, i + 2))
        (t0, f0), (t1, f1) = points[lo], points[hi]
        line = f0 + (f1 - f0) * (mid - t0) / (t1 - t0)
        off = abs(points[i][1] - line)
        curv = 0.0
        if 0 < i < len(points) - 1:
            (ta, fa), (tc, fc) = points[i - 1], points[i + 1]
            d1 = (points[i][1] - fa) / (mid - ta)
            d2 = (fc - points[i][1]) / (tc - mid)
            curv = abs(2 * (d2 - d1) / (tc - ta))
        total += max(curv * length * (length * length - 1) / 24, off * length / 2)
    return total


def to_dict(p: Plan) -> dict[str, list]:
    """The plan as plain JSON data (a trace keeps it: its records are the sampled steps')."""
    return {"steps": list(p.steps), "weights": [p.weights[s] for s in p.steps],
            "blocks": [list(b) for b in p.blocks]}


def from_dict(d: Mapping[str, list]) -> Plan:
    steps = tuple(int(s) for s in d["steps"])
    return Plan(steps, dict(zip(steps, (int(w) for w in d["weights"]), strict=True)),
                tuple((int(a), int(b)) for a, b in d["blocks"]))
