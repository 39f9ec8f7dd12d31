"""A synthetic GPU for memwall measure's tests: a Timer whose curves have planted figures
(an L2 knee at a known capacity, known bandwidths, latencies, launch overheads, and GEMM
times wave-quantized over a known tile), with seeded lognormal noise on every sample."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from memwall.measure import Device
from sim.cost import wave_factor
from workloads import ModelConfig

MiB = 2**20


@dataclass
class Planted:
    l2_bytes: float = 40 * MiB
    l2_bytes_per_s: float = 9.0e12
    hbm_bytes_per_s: dict[str, float] = field(
        default_factory=lambda: {"read": 4.0e12, "write": 3.6e12, "copy": 3.8e12})
    knee_width: float = 0.15  # of the L2 -> HBM transition, in doublings (0: a sharp LRU)
    l1_bytes_per_s: float = 25e12
    l1_per_unit: float = 256 * 1024
    latency_s: dict[str, float] = field(
        default_factory=lambda: {"l1": 35e-9, "l2": 260e-9, "hbm": 560e-9})
    vector_flops_per_s: float = 33e12
    launch_s: dict[bool, float] = field(default_factory=lambda: {False: 6e-6, True: 1.2e-6})
    units: int = 132
    tile: tuple[int, int, int] = (128, 128, 64)
    peaks: dict[str, float] = field(
        default_factory=lambda: {"bf16": 720e12, "fp16": 700e12, "fp8": 1300e12, "fp32": 50e12})
    gemv_bytes_per_s: float = 3.5e12


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, x))))


class FakeGPU:
    """memwall.measure.Timer over planted curves. `now()` is its clock: every case advances
    it by `cost_s`, so a budget cuts stages deterministically."""

    def __init__(self, name: str = "Synthetic GPU", seed: int = 0, noise: float = 0.05,
                 planted: Planted | None = None, cost_s: float = 0.01, reps: int = 7,
                 memory_bytes: int = 80 * 10**9) -> None:
        self.p = planted or Planted()
        self.rng = np.random.default_rng(seed)
        self.noise, self.cost_s, self.reps = noise, cost_s, reps
        self.t = 0.0
        self.calls: list[str] = []
        self.device = Device(name=name, capability=(9, 0), units=self.p.units,
                             memory_bytes=memory_bytes, l2_bytes=50 * MiB,
                             shared_per_unit_bytes=228 * 1024, registers_per_unit=65536,
                             clock_hz=1.755e9, software="PyTorch 0.0 (synthetic), no CUDA")

    def now(self) -> float:
        return self.t

    def _samples(self, seconds: float, what: str) -> list[float]:
        self.t += self.cost_s
        self.calls.append(what)
        return list(seconds * np.exp(self.rng.normal(0.0, self.noise, self.reps)))

    def _mix(self, size: float, edge: float, inner: float, outer: float,
             width: float | None = None) -> float:
        """Log-interpolation from `inner` (size << edge) to `outer` (size >> edge)."""
        w = max(self.p.knee_width if width is None else width, 1e-3)
        f = _sigmoid((math.log2(edge) - math.log2(size)) / w)
        return math.exp(math.log(outer) + (math.log(inner) - math.log(outer)) * f)

    def stream(self, kind: str, nbytes: int) -> list[float]:
        rate = self._mix(nbytes, self.p.l2_bytes, self.p.l2_bytes_per_s,
                         self.p.hbm_bytes_per_s[kind])
        return self._samples(nbytes / rate, f"stream {kind}")

    def l1_read(self) -> tuple[int, list[float]]:
        n = 1 << 30
        return n, self._samples(n / self.p.l1_bytes_per_s, "l1")

    def vector(self) -> tuple[int, list[float]]:
        n = 10**12
        return n, self._samples(n / self.p.vector_flops_per_s, "vector")

    def chase(self, nbytes: int) -> list[float]:
        lat = self.p.latency_s
        inner = self._mix(nbytes, self.p.l1_per_unit, lat["l1"], lat["l2"], 0.3)
        t = self._mix(nbytes, self.p.l2_bytes, inner, lat["hbm"])
        return self._samples(t, "chase")

    def launch(self, graph: bool) -> list[float]:
        return self._samples(self.p.launch_s[graph], "launch")

    def gemm(self, dtype: str, m: int, n: int, k: int) -> list[float] | None:
        if dtype not in self.p.peaks:
            self.t += self.cost_s
            return None
        size = {"fp32": 4, "fp8": 1}.get(dtype, 2)
        compute = 2 * m * n * k * wave_factor((1, m, n, k), self.p.units, self.p.tile)
        t = max(compute / self.p.peaks[dtype], (m * k + k * n + m * n) * size
                / self.p.gemv_bytes_per_s)
        return self._samples(t, f"gemm {dtype}")

    def _weights(self, model: ModelConfig, positions: int) -> float:
        if model.positions == "learned" and positions > model.pos_rows:  # as the real decoder
            raise ValueError(f"{model.name}: positions up to {positions}; its learned table "
                             f"has {model.pos_rows}")
        return model.n_params * 2.0

    def decode(self, model: ModelConfig, batch: int, kv_len: int,
               graph: bool) -> list[float] | None:
        w = self._weights(model, kv_len + 1)
        rate = self.p.l2_bytes_per_s if w < 0.8 * self.p.l2_bytes else self.p.gemv_bytes_per_s
        kv = 4 * model.n_layers * batch * (kv_len + 1) * model.n_kv_heads * model.d_head
        kernels = 16 * model.n_layers + 3
        return self._samples((w + kv) / rate + kernels * self.p.launch_s[graph],
                             f"decode {model.name}")

    def prefill(self, model: ModelConfig, batch: int, prompt_len: int) -> list[float] | None:
        flops = 2 * self._weights(model, prompt_len) / 2 * batch * prompt_len
        return self._samples(flops / self.p.peaks["bf16"] + 16 * model.n_layers
                             * self.p.launch_s[False], f"prefill {model.name}")

    def profile(self, model: ModelConfig, batch: int, kv_len: int
                ) -> list[tuple[str, int, float]]:
        self._weights(model, kv_len + 1)
        self.calls.append("profile")
        return [("gemv_bf16", 7 * model.n_layers, 1e-3), ("rms_norm", 2 * model.n_layers, 2e-4)]
