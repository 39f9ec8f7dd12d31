"""Flat trace records: one per op execution. Every summary is computed from these."""

from __future__ import annotations

from typing import NamedTuple


class OpRecord(NamedTuple):
    step: int  # 0 = prefill or encoder pass, k = decode step k
    phase: str  # "encode" | "prefill" | "decode"
    op: str  # node name in the op graph, e.g. "h3.attn.qkv"
    op_type: str  # "qkv", "softmax", ...
    kind: str  # "matmul" | "vector" | "collective"
    layer: int  # -1 outside the layer stack
    start_s: float
    end_s: float
    dispatch_s: float  # stalled on kernel dispatch
    compute_s: float  # compute units busy
    interconnect_s: float  # stalled on the interconnect
    stall_s: tuple[float, ...]  # stalled on each memory level, innermost first
    bytes: tuple[int, ...]  # bytes that crossed each level for this op, innermost first
    flops: int
    mops_bytes: int  # bytes read and written at the op boundary (the paper's MOPs)
    compute_start_s: float  # when the compute units began this op (after dispatch and waits)

    @property
    def elapsed_s(self) -> float:
        return self.end_s - self.start_s

