"""What `memwall measure` asks of a GPU: a Timer, and `cuda_timer()`, the one that runs on CUDA.

A Timer answers timing questions with repeated samples in seconds (the caller takes medians
and fits); it knows nothing of hierarchies, knees or files. The CUDA timer
(memwall/measure/cuda.py: PyTorch, and Triton for the hand-written kernels) is imported only
by `cuda_timer()`, after the checks that give one-line answers when PyTorch, a CUDA device
or Triton is missing. tests/fake_gpu.py is a synthetic Timer that drives the whole pipeline
without a GPU. To time another kind of device, write a class with these methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sim.errors import MemwallError
from workloads import ModelConfig

INSTALL = "pip install 'memwall-sim[gpu]'"
STREAMS = ("read", "write", "copy")


class MeasureError(MemwallError):
    """`memwall measure` cannot run here, or what it measured cannot make a hierarchy."""


@dataclass(frozen=True)
class Device:
    """What the driver reports about the device timed (None: not reported)."""

    name: str  # torch.cuda.get_device_name(), e.g. "NVIDIA H200"
    capability: tuple[int, int]  # compute capability (9, 0)
    units: int  # multiprocessors (SMs)
    memory_bytes: int  # device memory
    l2_bytes: int | None
    shared_per_unit_bytes: int | None  # shared memory per SM
    registers_per_unit: int | None  # 32-bit registers per SM
    clock_hz: float | None  # maximum SM clock
    software: str  # "PyTorch 2.11.0+cu130, CUDA 13.0, Triton 3.6.0"


class Timer(Protocol):
    """Each method returns repeated samples (seconds); None means the device or the library
    cannot run that case (a dtype it lacks, a model that does not fit)."""

    device: Device

    def stream(self, kind: str, nbytes: int) -> list[float]:
        """One pass over a working set of `nbytes` with the L1 bypassed: 'read' reads it,
        'write' writes it, 'copy' reads half and writes the other half."""
        ...

    def l1_read(self) -> tuple[int, list[float]]:
        """(bytes read, seconds) of every SM rereading a slice that fits its own L1."""
        ...

    def chase(self, nbytes: int) -> list[float]:
        """Seconds per load of one thread following a random pointer chain over `nbytes`."""
        ...

    def vector(self) -> tuple[int, list[float]]:
        """(FLOPs, seconds) of fp32 multiply chains in registers on every SM: one FLOP per
        instruction, as elementwise ops (softmax, norms, activations) issue them."""
        ...

    def launch(self, graph: bool) -> list[float] | None:
        """Seconds per kernel of back-to-back one-element kernels: launched eagerly from the
        host, or replayed from a captured CUDA graph (None where graphs cannot run)."""
        ...

    def gemm(self, dtype: str, m: int, n: int, k: int) -> list[float] | None:
        """Seconds of one (m, k) x (k, n) product in `dtype`, operands streamed from memory."""
        ...

    def decode(self, model: ModelConfig, batch: int, kv_len: int,
               graph: bool) -> list[float] | None:
        """Seconds of one decode step (bf16, random weights) of `batch` sequences with
        `kv_len` positions cached, eagerly or replayed from a CUDA graph."""
        ...

    def prefill(self, model: ModelConfig, batch: int, prompt_len: int) -> list[float] | None:
        """Seconds of a prefill of `prompt_len` tokens and the LM head of its last position."""
        ...

    def profile(self, model: ModelConfig, batch: int,
                kv_len: int) -> Sequence[tuple[str, int, float]]:
        """(kernel name, calls, total seconds) of one eager decode step, by kernel."""
        ...


def cuda_timer() -> Timer:
    """The Timer of the first CUDA device; MeasureError (one line) when PyTorch, a CUDA
    device or Triton is missing."""
    try:
        import torch
    except ImportError:
        raise MeasureError(f"memwall measure needs PyTorch with CUDA: {INSTALL}") from None
    if not torch.cuda.is_available():
        raise MeasureError(f"memwall measure: PyTorch {torch.__version__} sees no CUDA device "
                           "(torch.cuda.is_available() is False); expected an NVIDIA GPU and "
                           "a CUDA build of PyTorch")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise MeasureError("memwall measure needs Triton, which PyTorch's CUDA wheels for "
                           "Linux bring: pip install triton") from None
    from .cuda import CudaTimer

    return CudaTimer()
