"""The hand-written kernels of the CUDA timer (Triton): streaming read, write and copy with
the L1 bypassed, an L1 reread, a dependent pointer chase, and fp32 multiply chains.

Each streaming kernel runs a grid of `programs` that stride over BLOCK-element blocks of the
buffer, `passes` times in one launch, so a working set smaller than the L2 is timed at the
L2's rate without launch gaps. Addresses depend on the loop indices, so no load is hoisted
out of a loop and no store is dropped. Shapes: x, y flat fp32 buffers; `nxt` int64. Offsets are
int32: buffers stay under 2**31 elements (8 GiB of fp32; the plan stops at 4 GiB).
"""

from __future__ import annotations

import triton
import triton.language as tl

BLOCK = 2048  # fp32 elements per block: 8 KiB, 16 per thread at 4 warps (four 16-byte loads)
UNROLL = 8  # multiplies per loop iteration in `mul_chains`


@triton.jit
def stream_read(x, out, nblocks, passes, BLOCK: tl.constexpr, L1: tl.constexpr):
    """Sum `passes` sweeps over blocks pid, pid + P, ... of `x`; L1: cache in L1 (.ca),
    else bypass it (.cg, cached in L2 only)."""
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for _ in range(passes):
        for b in range(pid, nblocks, step):
            ptr = x + b * BLOCK + offs
            if L1:
                acc += tl.load(ptr, cache_modifier=".ca")
            else:
                acc += tl.load(ptr, cache_modifier=".cg")
    tl.store(out + pid, tl.sum(acc, axis=0))


@triton.jit
def stream_write(y, nblocks, passes, BLOCK: tl.constexpr):
    """Write every block of `y`, `passes` times (a different value each pass)."""
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    offs = tl.arange(0, BLOCK)
    for r in range(passes):
        val = offs.to(tl.float32) + r
        for b in range(pid, nblocks, step):
            tl.store(y + b * BLOCK + offs, val)


@triton.jit
def stream_copy(x, y, nblocks, passes, BLOCK: tl.constexpr):
    """y[block] = x[block] + pass for every block, `passes` times; x read with L1 bypassed."""
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    offs = tl.arange(0, BLOCK)
    for r in range(passes):
        for b in range(pid, nblocks, step):
            at = b * BLOCK + offs
            tl.store(y + at, tl.load(x + at, cache_modifier=".cg") + r)


@triton.jit
def l1_reread(x, out, passes, BLOCK: tl.constexpr):
    """Each program rereads its own two blocks (16 KiB), alternating, `passes` times: once
    warm they are L1 hits (.ca)."""
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for r in range(passes):
        b = pid * 2 + r % 2
        acc += tl.load(x + b * BLOCK + offs, cache_modifier=".ca")
    tl.store(out + pid, tl.sum(acc, axis=0))


@triton.jit
def chase(nxt, out, start, steps):
    """One thread's dependent loads: p = nxt[p], `steps` times from `start`; the last p out."""
    p = tl.load(nxt + start) * 0 + start
    for _ in range(steps):
        p = tl.load(nxt + p)
    tl.store(out, p)


@triton.jit
def mul_chains(x, out, a, iters, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    """v *= a, UNROLL times per iteration, `iters` iterations, in registers: one FLOP per
    instruction (no fused multiply-add); each thread's elements are independent chains.
    FLOPs = BLOCK x programs x UNROLL x iters."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(x + offs)
    for _ in range(iters):
        for _u in tl.static_range(UNROLL):
            v = v * a
    tl.store(out + offs, v)


def grid(n: int) -> tuple[int]:
    return (n,)


__all__ = ["BLOCK", "UNROLL", "chase", "grid", "l1_reread", "mul_chains", "stream_copy",
           "stream_read", "stream_write", "triton"]
