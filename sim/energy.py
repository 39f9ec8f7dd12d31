"""Energy of op records: the pure cost model that charges what a record already carries.

A record of one device is charged, in J (the hierarchy's `energy` figures, sim.hierarchy.Energy):

    compute       flops x the matmul energy per FLOP at the run's matmul precision (a matmul
                  record), or x the vector energy per FLOP (a vector record)
    each level    bytes that crossed it x its access energy per byte (reads and writes alike:
                  records do not split them), plus its leakage (W) x the record's elapsed time
    interconnect  a collective's bytes sent out of the device x the links' energy per byte: an
                  all-reduce of S bytes over N devices sends at least 2 (N-1)/N S from each
                  (reduce-scatter then all-gather), S being half the record's MOPs (it reads
                  and writes one buffer of S bytes)
    static        the board's idle power x the record's elapsed time

and a tensor-parallel group of N identical devices costs N times one. Every charge is linear
in record fields, so totals over any span are the same function of that span's sums, per kind
(`charge` takes records or such sums alike): the summary, the trace and a trace read back all
charge through here, and the two engines agree wherever their records agree.

Not modelled: DVFS and clocks that follow load, power capping, temperature, the host, and
energy that differs between a read and a write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cost import WIDER
from .hierarchy import Hierarchy
from .opgraph import DTYPE_BITS

COMPUTE, INTERCONNECT, STATIC = "compute", "interconnect", "static"


def parts(level_names: Sequence[str]) -> tuple[str, ...]:
    """The keys of `energy_j_by`, in order: compute, each level innermost first, the links,
    static."""
    return (COMPUTE, *level_names, INTERCONNECT, STATIC)


def matmul_dtype(precision: Mapping[str, str]) -> str:
    """The precision weight matmuls compute at: the wider of weights and activations, on a
    tie the weights' (workloads.model.compute_dtype, as the op graph builds them)."""
    w, a = precision["weights"], precision["activations"]
    return a if DTYPE_BITS[a] > DTYPE_BITS[w] else w


@dataclass(frozen=True)
class Tariff:
    """A run's prices: a hierarchy's energy figures resolved for its precision and group."""

    levels: tuple[str, ...]
    matmul_j_per_flop: float
    vector_j_per_flop: float
    access_j_per_byte: tuple[float, ...]  # per level, innermost first
    leakage_w: tuple[float, ...]  # per level: static_w + static_w_per_byte x capacity
    idle_w: float
    link_j_per_byte: float  # 0 without links
    devices: int  # tensor-parallel group; all charged

    @property
    def static_w(self) -> float:
        """Power drawn however idle: the board's and every level's leakage, per device."""
        return self.idle_w + sum(self.leakage_w)


def tariff(hier: Hierarchy, precision: Mapping[str, str] | None, tp: int = 1) -> Tariff | None:
    """The prices of a run of `hier` at `precision` (the summary's, with weights and
    activations) over `tp` devices; None if the hierarchy has no energy figures (or the run
    no precision: a summary of nothing)."""
    e = hier.energy
    if e is None or not precision:
        return None
    return Tariff(
        levels=tuple(lv.name for lv in hier.levels),
        matmul_j_per_flop=_per_flop(e, matmul_dtype(precision)),
        vector_j_per_flop=e.vector_j_per_flop,
        access_j_per_byte=tuple(e.levels[lv.name].access_j_per_byte for lv in hier.levels),
        leakage_w=tuple(e.levels[lv.name].leakage_w(lv.capacity_bytes) for lv in hier.levels),
        idle_w=e.idle_w,
        link_j_per_byte=e.interconnect_j_per_byte or 0.0,
        devices=max(1, tp),
    )


#: the record columns `charge` reads
COLUMNS = ("kind", "flops", "bytes", "mops_bytes", "elapsed_s")


def charge(t: Tariff, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Energy in J per row of `cols` (records, or per-kind sums of them: `kind` a sequence of
    str, `flops`, `mops_bytes` and `elapsed_s` (rows,), `bytes` (rows, levels)), per part
    (parts(t.levels)), for the whole group of devices."""
    kind = np.asarray(cols["kind"], dtype=object)
    flops = np.asarray(cols["flops"], dtype=np.float64)
    elapsed = np.asarray(cols["elapsed_s"], dtype=np.float64)
    moved = np.asarray(cols["bytes"], dtype=np.float64).reshape(len(kind), len(t.levels))
    n = t.devices
    per_flop = np.where(kind == "matmul", t.matmul_j_per_flop,
                        np.where(kind == "vector", t.vector_j_per_flop, 0.0))
    out = {COMPUTE: n * flops * per_flop}
    for i, name in enumerate(t.levels):
        out[name] = n * (moved[:, i] * t.access_j_per_byte[i] + t.leakage_w[i] * elapsed)
    sent = np.where(kind == "collective",
                    np.asarray(cols["mops_bytes"], dtype=np.float64) / 2 * 2 * (n - 1) / n, 0.0)
    out[INTERCONNECT] = n * sent * t.link_j_per_byte
    out[STATIC] = n * t.idle_w * elapsed
    return out


def total(t: Tariff, cols: Mapping[str, Any]) -> dict[str, float]:
    """Energy in J per part, summed over the rows of `cols` (as `charge` takes them)."""
    return {k: float(v.sum()) for k, v in charge(t, cols).items()}


def per_record_j(t: Tariff, cols: Mapping[str, Any]) -> np.ndarray:
    """Each record's energy in J, every part together (rows,)."""
    by = charge(t, cols)
    return np.sum(np.stack(list(by.values())), axis=0)


def _per_flop(e: Any, dtype: str) -> float:
    """J/FLOP of a matmul in `dtype` where the device computes it: the next wider precision
    it has, as sim.cost.matmul_rate falls back (a CPU without bf16 units runs fp32)."""
    for d in WIDER[dtype]:
        if d in e.matmul_j_per_flop:
            return e.matmul_j_per_flop[d]
    return e.vector_j_per_flop
