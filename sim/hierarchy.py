"""Frozen, SI-unit description of one accelerator: compute, memory levels, placement, links.

The hardware only: what a datasheet or a microbenchmark says. What the software stack decides
(launch overhead, fusion, kernel efficiencies, collectives, prefetch) is a Runtime
(sim/runtime.py); the file names its default one. Levels are ordered innermost first
(registers, l1, l2, hbm, further DRAM tiers), everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .document import overrides_of
from .errors import MemwallError

Topology = Literal["ring", "switch", "full"]


@dataclass(frozen=True)
class Compute:
    clock_hz: float
    peak_flops_per_s: dict[str, float]  # dense peak per precision name in sim.opgraph.DTYPES
    vector_flops_per_s: float  # softmax, norms, activations, residual adds
    units: int = 1  # compute units (SMs) a matmul's tiles are spread over, in waves


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
class LevelEnergy:
    """What a level costs in energy: per byte that crosses it, and leakage while the device
    is powered (a whole-level figure plus one per byte of capacity, for SRAM)."""

    access_j_per_byte: float  # per byte read or written (records do not split the two)
    static_w: float = 0.0
    static_w_per_byte: float = 0.0  # of capacity: "mW/MiB" in the file

    def leakage_w(self, capacity_bytes: int) -> float:
        return self.static_w + self.static_w_per_byte * capacity_bytes


@dataclass(frozen=True)
class Energy:
    """A device's energy figures (the file's optional `energy` section); see sim/energy.py
    for how a run is charged."""

    idle_w: float  # the board powered and idle: charged for the whole run
    matmul_j_per_flop: dict[str, float]  # per precision, every one of compute.peak
    vector_j_per_flop: float
    levels: dict[str, LevelEnergy]  # every level, by name
    interconnect_j_per_byte: float | None = None  # per byte sent out of a device


@dataclass(frozen=True)
class Hierarchy:
    name: str  # file stem, e.g. "hbm_accel"
    compute: Compute
    levels: tuple[Level, ...]  # innermost first
    placement: Placement
    interconnect: Interconnect | None = None
    description: str = ""
    runtime: str = ""  # the runtime this device runs by default (runtimes/<name>.yaml)
    energy: Energy | None = None  # None: no energy figures, so runs report none
    schema_version: int = 2
    path: str = ""  # where it was loaded from ("" for YAML text or a mapping)
    sha256: str = field(default="", compare=False)  # of the file's (or text's) bytes
    overrides: tuple[str, ...] = field(default=(), compare=False)  # "PATH=VALUE", as applied
    source: Any = field(default=None, compare=False, repr=False)  # sim.document.Document

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(name)

    def index(self, name: str) -> int:
        return [lv.name for lv in self.levels].index(name)

    def override(self, changes: Mapping[str, Any] | Sequence[str]) -> Hierarchy:
        """This hierarchy with values changed, re-validated with the checks and messages of
        --set: a mapping {"memory.l2.capacity": "512 MiB"} (values as the file takes them:
        strings with units, numbers, lists) or "PATH=VALUE" texts. Overrides add up: the
        result's `overrides` lists this hierarchy's and then these."""
        if self.source is None:
            raise MemwallError(f"hierarchy {self.name}: rebuilt from a trace, it keeps no "
                               "source to apply overrides to; load the file again")
        texts, origins = overrides_of(changes)
        return self.source.rebuild(texts, origins)
