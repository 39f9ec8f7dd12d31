"""The CUDA Timer: PyTorch for GEMMs, launches and the model runs, Triton kernels
(memwall/measure/kernels.py) for streams, the L1, the pointer chase and the vector rate.

How it times (METHOD.md): warm-ups first; kernels between CUDA events, model steps by the
host clock around a synchronized step (what a user waits for); small GEMMs as many products
captured in one CUDA graph, each sample the replay over their count; operands rotated over
enough copies to exceed the L2 three times, so a GEMV streams its weights from memory;
random data, never zeros. `CudaTimer("cpu")` runs the same code on the CPU (Triton's
interpreter, TRITON_INTERPRET=1) to check it without a GPU; its figures mean nothing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch
import triton
from torch.profiler import ProfilerActivity, profile

import workloads
from workloads import ModelConfig

from . import kernels as K
from .decoder import Decoder
from .timer import Device

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
          "fp8": getattr(torch, "float8_e4m3fn", None)}
WARMUP, SAMPLES = 2, 7
MODEL_SAMPLES, MODEL_SECONDS = 15, 0.6  # decode steps timed: at most this many or seconds
GRAPH_BELOW_S = 50e-6  # GEMMs shorter than this are timed as a graph of many
CHASE_SLOTS = 65536  # pointer-chain links at most; the stride grows past 8 MiB
LINE = 128  # bytes: the chase touches one cache line per link


class CudaTimer:
    """memwall.measure.Timer on the first CUDA device (or, for checks, the CPU)."""

    def __init__(self, device: str = "cuda") -> None:
        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"
        self.target_bytes = 2**30 if self.cuda else 2**22  # bytes a stream launch moves
        self.device = _device_info(self.dev)
        self._buffers: dict[str, torch.Tensor] = {}
        self._model: tuple[ModelConfig, Decoder] | None = None
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 GEMMs on the fp32 units

    # timing helpers -----------------------------------------------------------------------
    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def _kernel_times(self, fn: Callable[[], object], reps: int = SAMPLES,
                      warmup: int = WARMUP) -> list[float]:
        """Seconds of each of `reps` calls of `fn`, between CUDA events."""
        for _ in range(warmup):
            fn()
        self._sync()
        out = []
        for _ in range(reps):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return out

    def _wall_times(self, fn: Callable[[], object], reps: int, warmup: int,
                    seconds: float = float("inf")) -> list[float]:
        """Host seconds of each synchronized call of `fn` (up to `reps`, or `seconds`)."""
        for _ in range(warmup):
            fn()
        self._sync()
        out: list[float] = []
        start = time.perf_counter()
        while len(out) < reps and (len(out) < 3 or time.perf_counter() - start < seconds):
            t0 = time.perf_counter()
            fn()
            self._sync()
            out.append(time.perf_counter() - t0)
        return out

    def _graph(self, fn: Callable[[], object]) -> Callable[[], None] | None:
        """`fn` captured in a CUDA graph (warmed up on a side stream first); None on CPU."""
        if not self.cuda:
            return None
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream(self.dev).wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        self._sync()
        return g.replay

    def _buffer(self, name: str, nbytes: int, dtype: torch.dtype = torch.float32
                ) -> torch.Tensor:
        """A random buffer of at least `nbytes`, kept for reuse (grown when too small)."""
        t = self._buffers.get(name)
        if t is None or t.numel() * t.element_size() < nbytes:
            self._buffers.pop(name, None)
            n = -(-nbytes // torch.empty((), dtype=dtype).element_size())
            t = torch.randn(n, device=self.dev, dtype=torch.float32).to(dtype)
            self._buffers[name] = t
        return t

    # microbenchmarks ----------------------------------------------------------------------
    def stream(self, kind: str, nbytes: int) -> list[float]:
        half = kind == "copy"
        nblocks = max(1, (nbytes // (2 if half else 1)) // (4 * K.BLOCK))
        passes = max(1, math.ceil(self.target_bytes / nbytes))
        programs = min(self.device.units * 8, nblocks)
        x = self._buffer("x", nblocks * K.BLOCK * 4)
        out = self._buffer("out", programs * 4)
        grid = (programs,)
        if kind == "read":
            def fn() -> None:
                K.stream_read[grid](x, out, nblocks, passes, BLOCK=K.BLOCK, L1=False)
        elif kind == "write":
            def fn() -> None:
                K.stream_write[grid](x, nblocks, passes, BLOCK=K.BLOCK)
        else:
            y = self._buffer("y", nblocks * K.BLOCK * 4)

            def fn() -> None:
                K.stream_copy[grid](x, y, nblocks, passes, BLOCK=K.BLOCK)
        return [t / passes for t in self._kernel_times(fn)]

    def l1_read(self) -> tuple[int, list[float]]:
        programs, passes = self.device.units * 4, 2048 if self.cuda else 4
        x = self._buffer("l1", programs * 2 * K.BLOCK * 4)
        out = self._buffer("out", programs * 4)

        def fn() -> None:
            K.l1_reread[(programs,)](x, out, passes, BLOCK=K.BLOCK)
        return programs * passes * K.BLOCK * 4, self._kernel_times(fn)

    def vector(self) -> tuple[int, list[float]]:
        block, programs, iters = 1024, self.device.units * 16, 1024 if self.cuda else 2
        x = 1 + 0.01 * torch.rand(programs * block, device=self.dev)
        out = torch.empty_like(x)

        def fn() -> None:
            K.mul_chains[(programs,)](x, out, 1.0000001, iters, BLOCK=block, UNROLL=K.UNROLL)
        return programs * block * iters * K.UNROLL, self._kernel_times(fn)

    def chase(self, nbytes: int) -> list[float]:
        stride = max(LINE, nbytes // CHASE_SLOTS // LINE * LINE)
        slots = max(2, nbytes // stride)
        gen = torch.Generator(self.dev).manual_seed(nbytes)
        order = torch.randperm(slots, generator=gen, device=self.dev)
        lines = torch.randint(0, stride // LINE, (slots,), generator=gen, device=self.dev)
        at = order * (stride // 8) + lines * (LINE // 8)  # int64 index of each link, by order
        nxt = torch.zeros(slots * stride // 8, dtype=torch.int64, device=self.dev)
        nxt[at] = torch.roll(at, -1)
        out = torch.zeros(1, dtype=torch.int64, device=self.dev)
        steps = max(slots, 16384) if self.cuda else 64
        start = int(at[0])

        def fn() -> None:
            K.chase[(1,)](nxt, out, start, steps, num_warps=1)
        return [t / steps for t in self._kernel_times(fn, warmup=1)]

    def launch(self, graph: bool) -> list[float] | None:
        x = torch.zeros(1, device=self.dev)
        n = 1000 if self.cuda else 10

        def many() -> None:
            for _ in range(n):
                x.add_(1.0)
        fn = self._graph(many) if graph else many
        if fn is None:
            return None
        return [t / n for t in self._wall_times(fn, SAMPLES, WARMUP)]

    def gemm(self, dtype: str, m: int, n: int, k: int) -> list[float] | None:
        """None for a dtype this PyTorch lacks; a shape the library refuses raises, and the
        session logs it (errors.log)."""
        dt = DTYPES.get(dtype)
        if dt is None:
            return None
        size = torch.empty((), dtype=dt).element_size()
        l2 = self.device.l2_bytes or 50 * 2**20
        sets = max(1, min(16, math.ceil(3 * l2 / ((m * k + n * k) * size))))
        ops = [(torch.randn(m, k, device=self.dev).to(dt), torch.randn(n, k, device=self.dev)
                .to(dt)) for _ in range(sets)]
        product = _product(dtype, torch.ones((), device=self.dev))
        turn = [0]

        def one() -> None:
            a, b = ops[turn[0] % sets]
            turn[0] += 1
            product(a, b)
        est = sorted(self._kernel_times(one, reps=3))[1]
        if est >= GRAPH_BELOW_S or not self.cuda:
            return self._kernel_times(one)
        count = max(sets, min(512, math.ceil(200e-6 / est)))

        def many() -> None:
            for j in range(count):
                product(*ops[j % sets])
        g = self._graph(many)
        assert g is not None
        return [t / count for t in self._kernel_times(g)]

    # model runs ---------------------------------------------------------------------------
    def _decoder(self, cfg: ModelConfig) -> Decoder:
        if self._model is None or self._model[0] != cfg:
            self._model = None
            self._buffers.clear()
            if self.cuda:
                torch.cuda.empty_cache()
            self._model = (cfg, Decoder(cfg, self.dev))
        return self._model[1]

    def decode(self, model: ModelConfig, batch: int, kv_len: int,
               graph: bool) -> list[float] | None:
        try:
            d = self._decoder(model)
            cache = d.cache(batch, kv_len + 1)
            tokens = torch.randint(0, model.vocab, (batch, 1), device=self.dev)
            rope = d.rope(kv_len, 1)

            def step() -> None:
                d.forward(tokens, kv_len, cache, rope)
            fn = self._graph(step) if graph else step
            if fn is None:
                return None
            return self._wall_times(fn, MODEL_SAMPLES, 3, MODEL_SECONDS)
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            cache = []
            if self.cuda:
                torch.cuda.empty_cache()

    def prefill(self, model: ModelConfig, batch: int, prompt_len: int) -> list[float] | None:
        try:
            d = self._decoder(model)
            cache = d.cache(batch, prompt_len)
            tokens = torch.randint(0, model.vocab, (batch, prompt_len), device=self.dev)
            rope = d.rope(0, prompt_len)
            return self._wall_times(lambda: d.forward(tokens, 0, cache, rope), 5, 1,
                                    MODEL_SECONDS)
        except torch.cuda.OutOfMemoryError:
            return None
        finally:
            cache = []
            if self.cuda:
                torch.cuda.empty_cache()

    def profile(self, model: ModelConfig, batch: int, kv_len: int
                ) -> Sequence[tuple[str, int, float]]:
        d = self._decoder(model)
        cache = d.cache(batch, kv_len + 1)
        tokens = torch.randint(0, model.vocab, (batch, 1), device=self.dev)
        rope = d.rope(kv_len, 1)
        for _ in range(3):
            d.forward(tokens, kv_len, cache, rope)
        self._sync()
        kind = ProfilerActivity.CUDA if self.cuda else ProfilerActivity.CPU
        with profile(activities=[kind]) as prof:
            d.forward(tokens, kv_len, cache, rope)
            self._sync()
        rows = []
        for e in prof.key_averages():
            us = getattr(e, "device_time_total", None) if self.cuda else e.cpu_time_total
            if us is None:
                us = getattr(e, "cuda_time_total", 0.0)
            if us > 0:
                rows.append((e.key, int(e.count), us / 1e6))
        return rows


def _product(dtype: str, one: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], object]:
    """(m, k) x (n, k) -> (m, n): a plain matmul, or for fp8 torch._scaled_mm (bf16 out)."""
    if dtype == "fp8":
        return lambda a, b: torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one,
                                             out_dtype=torch.bfloat16)
    return lambda a, b: a @ b.t()


def _nvml_max_clock_khz(index: int) -> float | None:
    """The maximum SM clock by NVML (nvidia-ml-py), where the device properties lack it
    (CUDA 13 dropped cudaDeviceProp.clockRate)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return 1e3 * pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
    except Exception:  # no NVML: the clock then comes from a datasheet, or is refused
        return None


def _device_info(dev: torch.device) -> Device:
    software = (f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"Triton {triton.__version__}")
    if dev.type != "cuda":
        return Device("CPU (dry run)", (0, 0), 4, 2**31, 2**20, 64 * 1024, 65536, 1e9,
                      software)
    p = torch.cuda.get_device_properties(dev)
    khz = getattr(p, "clock_rate", None) or _nvml_max_clock_khz(dev.index or 0)
    return Device(name=torch.cuda.get_device_name(dev), capability=(p.major, p.minor),
                  units=p.multi_processor_count, memory_bytes=int(p.total_memory),
                  l2_bytes=getattr(p, "L2_cache_size", None),
                  shared_per_unit_bytes=getattr(p, "shared_memory_per_multiprocessor", None),
                  registers_per_unit=getattr(p, "regs_per_multiprocessor", None),
                  clock_hz=khz * 1e3 if khz else None, software=software)


def self_check(device: str = "cuda") -> list[str]:
    """Check the timer's kernels and the decoder compute what they should (METHOD.md:
    correct first), on fresh random data: the read and copy kernels against torch, the
    pointer chase against the chain followed on the host, and each decoder family's
    incremental decode against its prefill (fp32). One line per check; AssertionError on
    the first that fails."""
    t = CudaTimer(device)
    lines = []
    x = torch.randn(6 * K.BLOCK, device=t.dev)
    out = torch.zeros(4, device=t.dev)
    K.stream_read[(4,)](x, out, 6, 3, BLOCK=K.BLOCK, L1=False)
    err = abs(float(out.sum()) - 3 * float(x.sum())) / float(x.abs().sum())
    assert err < 1e-5, f"stream_read: relative error {err:.2e}"
    y = torch.full_like(x, float("nan"))
    K.stream_copy[(4,)](x, y, 6, 2, BLOCK=K.BLOCK)
    assert torch.equal(y, x + 1), "stream_copy: output differs from x + 1"
    lines.append(f"stream kernels: read error {err:.1e}, copy exact")
    slots = 512
    order = torch.randperm(slots, device=t.dev) * 16
    nxt = torch.zeros(slots * 16, dtype=torch.int64, device=t.dev)
    nxt[order] = torch.roll(order, -1)
    got = torch.zeros(1, dtype=torch.int64, device=t.dev)
    K.chase[(1,)](nxt, got, int(order[0]), 1000, num_warps=1)
    assert int(got) == int(order[1000 % slots]), "chase: wrong final link"
    lines.append("pointer chase: 1000 links followed exactly")
    for name in ("gpt2", "llama3-8b", "gpt-j-6b"):
        base = workloads.preset(name)
        cfg = dataclasses.replace(base, n_layers=2, vocab=512, d_ff=256, d_model=4 * base.d_head,
                                  n_heads=4, n_kv_heads=2 if base.n_kv_heads < base.n_heads else 4)
        d = Decoder(cfg, t.dev, torch.float32)
        tok = torch.randint(0, cfg.vocab, (2, 9), device=t.dev)
        ref = d.forward(tok, 0, d.cache(2, 9), d.rope(0, 9))
        cache = d.cache(2, 9, seed=7)
        d.forward(tok[:, :8], 0, cache, d.rope(0, 8))
        inc = d.forward(tok[:, 8:], 8, cache, d.rope(8, 1))
        err = float((inc - ref).norm() / ref.norm())
        assert err < 1e-3, f"decoder {name}: decode differs from prefill by {err:.2e}"
        lines.append(f"decoder {name}-shaped: decode matches prefill ({err:.1e})")
    return lines
