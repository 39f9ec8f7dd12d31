"""Pure cost functions: how long an op computes and how long a collective takes on the links.
No SimPy, no state. Each takes the hardware (Compute, Interconnect) and the software stack
(Runtime): a GEMM runs at the device's peak times the runtime's GEMM efficiency, in waves of
the runtime's tiles over the device's units. How long transfers take, alone or sharing
levels, is the fabric's fluid model (sim/fabric.py), which is free of SimPy too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .hierarchy import Compute, Interconnect
from .opgraph import Tensor
from .runtime import Runtime

Gemm = tuple[int, int, int, int]  # (batch, M, N, K): batch x (M, K) @ (K, N)

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


def matmul_rate(dtype: str, compute: Compute, runtime: Runtime) -> float:
    """Sustained FLOP/s of a matmul in `dtype`, falling back to a wider precision the device has."""
    for d in WIDER[dtype]:
        peak = compute.peak_flops_per_s.get(d)
        if peak:
            return peak * runtime.matmul_by_dtype.get(d, runtime.matmul_efficiency)
    return vector_rate(compute, runtime)


def vector_rate(compute: Compute, runtime: Runtime) -> float:
    """Sustained FLOP/s of softmax, norms, activations and adds."""
    return compute.vector_flops_per_s * runtime.vector_efficiency


def gemm_shape(reads: Sequence[Tensor], writes: Sequence[Tensor]) -> Gemm | None:
    """(batch, M, N, K) of a matmul op from its operand shapes, or None if they do not say.

    reads[0] is the left operand (..., K). Against a 2-D weight (N, K) every leading dim is a
    row: M = B x T. Against another activation (attention: q with K, probs with V) the leading
    dims but the last two are a batch of independent GEMMs: batch = B x heads, M = T. N is
    what the outputs add up to per row (q, k and v together for a fused QKV).
    """
    if len(reads) < 2 or len(reads[0].shape) < 2:
        return None
    a, b = reads[0].shape, reads[1].shape
    K = a[-1]
    batch, M = (1, math.prod(a[:-1])) if len(b) == 2 else (math.prod(a[:-2]), a[-2])
    if min(K, batch, M) < 1:
        return None
    N = sum(math.prod(t.shape) for t in writes) // (batch * M)
    return (batch, M, N, K) if N >= 1 else None


def wave_factor(gemm: Gemm, units: int, tile: tuple[int, int, int]) -> float:
    """How much longer than its FLOPs at the sustained rate a GEMM takes when its output is cut
    into tiles that run in waves over `units` compute units (SMs): >= 1.

    tiles = batch x ceil(M / tile_m) x ceil(N / tile_n); each unit computes one tile at a time,
    so a wave lasts as long as one full tile, padding of edge tiles included. The tiles that
    do not fill a last wave (all of them, for a grid smaller than the device) are split along
    K (split-K, as stream-K schedulers do with the tail) into as many slices as still fit in
    one wave, at most one per tile_k step of K; the units left idle in that wave count as time.
    A tile is never taller or wider than the GEMM (an M = 1 decode step runs as a GEMV, not
    padded to 64 or 128 rows). NVIDIA, "Matrix Multiplication Background User's Guide"
    (DU-09799-001), tile and wave quantization.
    """
    batch, M, N, K = gemm
    tm, tn, tk = min(M, tile[0]), min(N, tile[1]), tile[2]
    tiles = batch * math.ceil(M / tm) * math.ceil(N / tn)
    full, tail = divmod(tiles, units)
    waves = full + (1 / max(1, min(units // tail, math.ceil(K / tk))) if tail else 0)
    return waves * units * tm * tn / (batch * M * N)


def compute_s(kind: str, flops: int, dtype: str, compute: Compute, runtime: Runtime,
              gemm: Gemm | None = None) -> float:
    """Busy time of the compute units for one op (s). A matmul whose `gemm` shape is known,
    under a runtime with a `matmul_tile`, pays wave quantization over the device's units (see
    `wave_factor`)."""
    if kind == "matmul":
        t = flops / matmul_rate(dtype, compute, runtime)
        if gemm is not None and runtime.matmul_tile is not None:
            t *= wave_factor(gemm, compute.units, runtime.matmul_tile)
        return t
    if kind == "vector":
        return flops / vector_rate(compute, runtime)
    return 0.0


def op_compute_s(a: dict, compute: Compute, runtime: Runtime) -> float:
    """Busy time of the compute units for the op (or fused kernel) with node attributes `a`
    (sim/opgraph.py): a kernel's parts each at their own rate, a matmul with its GEMM shape."""
    parts = a.get("parts")
    if parts is None:
        parts = ((a["kind"], a["flops"], a["dtype"], a["reads"], a["writes"]),)
    waves = runtime.matmul_tile is not None  # else the GEMM shape changes nothing
    t = 0.0
    for kind, flops, dtype, reads, writes in parts:
        t += compute_s(kind, flops, dtype, compute, runtime,
                       gemm_shape(reads, writes) if waves and kind == "matmul" else None)
    return t


def all_reduce_s(nbytes: float, group: int, link: Interconnect, runtime: Runtime) -> float:
    """All-reduce of `nbytes` per device over `group` devices by the runtime's algorithm (s).

    With N devices, S bytes, B the sustained bandwidth out of one device, a the hardware
    latency of one step over the links (the hierarchy's) and L the library's software
    latency, paid once per collective (the runtime's `collective.latency`: launch, flag set-up,
    synchronisation; NCCL's tuning model has the same split, a base latency plus one hardware
    latency per step):
      ring      reduce-scatter then all-gather around a ring: 2(N-1) steps of S/N each,
                2(N-1)/N S / B + 2(N-1) a + L;
      tree      NCCL's double binary tree, pipelined: 2 S / B + 2 log2(N) a + L;
      two_shot  reduce-scatter and all-gather through the switch or all-to-all links:
                2(N-1)/N S / B' + 2 a + L;
      one_shot  every device reads the others' whole buffers and reduces: (N-1) S / B' + a + L;
      auto      the fastest of these for this message (NCCL and TensorRT-LLM's custom
                all-reduce pick by size: one-shot for small messages, two-shot or ring above).
    B' is B for a switch, (N-1) B spread over N-1 direct links for "full", and for a ring
    topology only the ring and tree algorithms apply (B' is not reachable: auto keeps those).
    """
    if group <= 1 or nbytes <= 0:
        return 0.0
    a, sw = link.latency_s, runtime.collective_latency_s
    bw = link.link_bandwidth_bytes_per_s * link.efficiency
    n, s = group, nbytes
    direct = bw * (n - 1) if link.topology == "full" else bw
    times = {
        "ring": 2 * (n - 1) / n * s / bw + 2 * (n - 1) * a + sw,
        "tree": 2 * s / bw + 2 * math.log2(n) * a + sw,
    }
    if link.topology != "ring":
        times["two_shot"] = 2 * (n - 1) / n * s / direct + 2 * a + sw
        times["one_shot"] = (n - 1) * s / direct + a + sw
    if runtime.collective == "auto":
        return min(times.values())
    if runtime.collective not in times:  # one_shot or two_shot on a ring of links
        return times["ring"]
    return times[runtime.collective]
