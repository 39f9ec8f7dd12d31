"""Pure cost functions: how long an op computes and how long a collective takes on the links.
No SimPy, no state. How long transfers take, alone or sharing levels, is the fabric's fluid
model (sim/fabric.py), which is free of SimPy too.
"""

from __future__ import annotations

from .hierarchy import Compute, Interconnect

#: When a device has no peak for a precision it computes in the next wider one it has
#: (an A100 runs fp8 matmuls as fp16; a CPU without bf16 units runs them as fp32).
WIDER: dict[str, tuple[str, ...]] = {
    "int4": ("int4", "int8", "fp8", "fp16", "bf16", "fp32"),
    "int8": ("int8", "fp8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "fp16", "bf16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp32": ("fp32",),
}


def matmul_rate(dtype: str, compute: Compute) -> float:
    """Sustained FLOP/s of a matmul in `dtype`, falling back to a wider precision the device has."""
    for d in WIDER[dtype]:
        peak = compute.peak_flops_per_s.get(d)
        if peak:
            return peak * compute.matmul_efficiency
    return compute.vector_flops_per_s * compute.vector_efficiency


def compute_s(kind: str, flops: int, dtype: str, compute: Compute) -> float:
    """Busy time of the compute units for one op (s)."""
    if kind == "matmul":
        return flops / matmul_rate(dtype, compute)
    if kind == "vector":
        return flops / (compute.vector_flops_per_s * compute.vector_efficiency)
    return 0.0


def all_reduce_s(nbytes: float, group: int, link: Interconnect) -> float:
    """All-reduce of `nbytes` per device over `group` devices (s).

    ring: 2(N-1)/N of the bytes cross each link, in 2(N-1) latency-bound steps;
    switch: reduce-scatter plus all-gather through the switch, 2(N-1)/N of the bytes, 2 latencies;
    full (all-to-all links, N-1 per device): each device sends (N-1)/N of the bytes spread over its
    N-1 links, twice, 2 latencies.
    """
    if group <= 1 or nbytes <= 0:
        return 0.0
    bw = link.link_bandwidth_bytes_per_s * link.efficiency
    share = 2 * (group - 1) / group * nbytes
    if link.topology == "ring":
        return share / bw + 2 * (group - 1) * link.latency_s
    if link.topology == "switch":
        return share / bw + 2 * link.latency_s
    return share / ((group - 1) * bw) + 2 * link.latency_s
