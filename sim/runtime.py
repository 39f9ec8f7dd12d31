"""Frozen, SI-unit description of a software stack: what the runtime, not the chip, decides.

A hierarchy file (sim/hierarchy.py) carries the hardware: peaks, capacities, bandwidths,
latencies, what a streaming benchmark sustains. A runtime file (runtimes/*.yaml, read by
sim/runtime_file.py) carries what the inference stack decides on that hardware: how long a
kernel launch and a step's host work take, which ops run as one kernel, how close its
GEMMs, streaming kernels and vector kernels come to the hardware's rates, which all-reduce
algorithm it runs, and whether it fetches weights ahead. One device runs one runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .document import overrides_of
from .errors import MemwallError

#: All-reduce algorithms (sim/cost.py all_reduce_s has the formulas): "auto" takes the fastest
#: for each message, as NCCL and TensorRT-LLM's custom all-reduce choose by size.
COLLECTIVES: tuple[str, ...] = ("ring", "tree", "one_shot", "two_shot", "auto")
Collective = Literal["ring", "tree", "one_shot", "two_shot", "auto"]


@dataclass(frozen=True)
class Runtime:
    name: str  # file stem, e.g. "tensorrt-llm"
    launch_s: float  # per kernel: the gap a launch leaves between kernels of one step
    step_s: float = 0.0  # per step (a prefill or one decode step): host work, sampling
    host_s: float = 0.0  # per kernel: host time to issue it; the host runs ahead of the
    #                      device, so a kernel starts no earlier than its issue (eager Python)
    fuse_epilogues: bool = False  # elementwise ops run in the epilogue of their matmul
    fuse_attention: bool = False  # scores, softmax and values as one kernel (flash-style)
    matmul_efficiency: float = 1.0  # sustained fraction of the dense matmul peak
    matmul_by_dtype: Mapping[str, float] = field(default_factory=dict)  # the same, where a
    #                      precision's GEMMs differ (fp8 kernels reach less of their peak)
    matmul_tile: tuple[int, int, int] | None = None  # (M, N, K) of its GEMM kernels; with
    #                                                  the device's units, wave quantization
    memory_efficiency: float = 1.0  # of each level's sustained bandwidth, for kernels' streams
    memory_by_dtype: Mapping[str, float] = field(default_factory=dict)  # the same for the
    #                  weight streams of ops whose weights are in that precision (int4 GEMV
    #                  kernels dequantize as they stream and reach less)
    vector_efficiency: float = 1.0  # sustained fraction of the vector rate
    collective: Collective = "ring"
    collective_latency_s: float = 0.0  # the library's per-collective software overhead
    prefetch_depth: int = 0  # ops ahead whose weights are fetched early
    description: str = ""
    devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # hierarchy name ->
    #                               "PATH=VALUE" overrides that apply on that device
    schema_version: int = 1
    path: str = ""  # where it was loaded from ("" for YAML text or a mapping)
    sha256: str = field(default="", compare=False)
    overrides: tuple[str, ...] = field(default=(), compare=False)
    source: Any = field(default=None, compare=False, repr=False)  # sim.document.Document

    @property
    def fusion(self) -> str:
        """The fusion name of workloads/fusion.py this runtime's kernels follow."""
        if self.fuse_epilogues and self.fuse_attention:
            return "fused"
        if self.fuse_attention:
            return "attention"
        if self.fuse_epilogues:
            return "epilogues"
        return "none"

    def override(self, changes: Mapping[str, Any] | Sequence[str]) -> Runtime:
        """This runtime with values changed, re-validated with the checks of its file (see
        Hierarchy.override): {"kernels.launch": "2 us"} or "PATH=VALUE" texts."""
        if self.source is None:
            raise MemwallError(f"runtime {self.name}: rebuilt from a trace, it keeps no source "
                               "to apply overrides to; load the file again")
        texts, origins = overrides_of(changes)
        return self.source.rebuild(texts, origins)

    def on(self, device: str) -> Runtime:
        """This runtime as it runs on the hierarchy called `device`: its `devices` entry for
        that name applied (the GEMM library of one vendor differs from another's), under the
        overrides already made (a --set of efficiency.matmul wins over the entry; a --set of
        devices.NAME.efficiency.matmul changes the entry)."""
        extra = self.devices.get(device)
        if not extra:
            return self
        origins = [f"{self.path or self.name}: devices.{device}: {t}" for t in extra]
        return (self.source.rebuild(extra, origins, first=True) if self.source is not None
                else self)
