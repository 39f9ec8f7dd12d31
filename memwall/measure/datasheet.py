"""Datasheet figures of the devices memwall knows, by the name the driver reports.

The figures are those of the bundled hierarchy files, which cite each one (NVIDIA's H200,
H100 and A100 datasheets and whitepapers); only the datasheet-grade ones are taken: dense
peaks per precision, the FP32 vector peak, the clock, HBM bandwidth and capacity, per-SM
register and L1 capacity, and, as labelled estimates, the register file's bandwidth and
latency, which no software can time. Names are matched exactly: "NVIDIA H200" is the SXM part
(H200.md); the H200 NVL and the PCIe H100 have other clocks and bandwidths, and get no
datasheet rather than a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass

from memwall.inputs import as_hierarchy
from sim import Hierarchy, Level

#: torch.cuda.get_device_name() -> bundled hierarchy file
KNOWN = {
    "NVIDIA H200": "h200.yaml",
    "NVIDIA H100 80GB HBM3": "h100_sxm.yaml",  # the SXM5 part
    "NVIDIA A100-SXM4-80GB": "a100_80gb.yaml",
}


@dataclass(frozen=True)
class Datasheet:
    file: str  # the bundled file the figures come from
    hierarchy: Hierarchy

    @property
    def peaks(self) -> dict[str, float]:
        return self.hierarchy.compute.peak_flops_per_s

    @property
    def vector_flops_per_s(self) -> float:
        return self.hierarchy.compute.vector_flops_per_s

    @property
    def clock_hz(self) -> float:
        return self.hierarchy.compute.clock_hz

    def level(self, name: str) -> Level:
        return next(lv for lv in self.hierarchy.levels if lv.name == name)

    def cite(self) -> str:
        return f"hierarchies/{self.file}"


def for_device(device_name: str) -> Datasheet | None:
    """The datasheet of `device_name` (as the driver names it), or None for a device memwall
    has no datasheet for."""
    file = KNOWN.get(device_name.strip())
    if file is None:
        return None
    return Datasheet(file, as_hierarchy(file))
