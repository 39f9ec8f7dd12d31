"""Frozen, SI-unit description of one accelerator: compute, memory levels, placement, links.

Levels are ordered innermost first (registers, l1, l2, hbm, further DRAM tiers), everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Topology = Literal["ring", "switch", "full"]


@dataclass(frozen=True)
class Compute:
    clock_hz: float
    peak_flops_per_s: dict[str, float]  # dense peak per precision name in sim.opgraph.DTYPES
    vector_flops_per_s: float  # softmax, norms, activations, residual adds
    dispatch_s: float  # per-kernel launch overhead
    matmul_efficiency: float = 1.0  # sustained fraction of the dense peak
    vector_efficiency: float = 1.0
    prefetch_depth: int = 1  # ops ahead whose weights may be fetched early (engine default)
    units: int = 1  # compute units (SMs) a matmul's tiles are spread over, in waves
    matmul_tile: tuple[int, int, int] | None = None  # (M, N, K) elements; None: no wave model
    fusion: str = "none"  # which ops the runtime runs as one kernel (workloads/fusion.py)


@dataclass(frozen=True)
class Level:
    name: str
    capacity_bytes: int
    bandwidth_bytes_per_s: float  # peak
    latency_s: float  # per access chain (first byte), not per byte
    efficiency: float = 1.0  # sustained fraction of peak bandwidth
    policy: str = "none"  # cache policy for tensors homed further out: sim.cache.POLICIES

    @property
    def sustained_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.efficiency


@dataclass(frozen=True)
class Placement:
    weights: tuple[str, ...]  # level names, in fill order
    kv_cache: tuple[str, ...]
    activations: tuple[str, ...]


@dataclass(frozen=True)
class Interconnect:
    link_bandwidth_bytes_per_s: float  # per direction, per device
    latency_s: float  # per hop / per message
    topology: Topology
    max_devices: int
    efficiency: float = 1.0


@dataclass(frozen=True)
class Hierarchy:
    name: str  # file stem, e.g. "hbm_accel"
    compute: Compute
    levels: tuple[Level, ...]  # innermost first
    placement: Placement
    interconnect: Interconnect | None = None
    description: str = ""
    schema_version: int = 1
    path: str = ""  # where it was loaded from
    document: Any = field(default=None, compare=False, repr=False)  # raw tree, for overrides

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(name)

    def index(self, name: str) -> int:
        return [lv.name for lv in self.levels].index(name)
