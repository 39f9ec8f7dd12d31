"""A toy two-level device, a toy runtime and toy op chains, with numbers chosen so times work
out by hand."""

from __future__ import annotations

import networkx as nx

from sim.engine import EngineOptions
from sim.hierarchy import Compute, Energy, Hierarchy, Level, LevelEnergy, Placement
from sim.opgraph import Tensor
from sim.runtime import Runtime

KB = 1000


def toy_hierarchy(
    sram_bytes: int = 1_000_000, sram_policy: str = "lru", dram_bw: float = 1e11,
    sram_bw: float = 1e12,
) -> Hierarchy:
    """sram: 1 MB, 1 TB/s, 10 ns; dram: 10 GB, 100 GB/s, 100 ns; 1 TFLOP/s fp32."""
    return Hierarchy(
        "toy",
        Compute(1e9, {"fp32": 1e12}, 1e11),
        (
            Level("sram", sram_bytes, sram_bw, 10e-9, 1.0, sram_policy),
            Level("dram", 10**10, dram_bw, 100e-9),
        ),
        Placement(("dram",), ("dram",), ("sram", "dram")),
    )


def toy_energy(sram_w_per_byte: float = 1e-6) -> Energy:
    """10 W idle; 1 pJ/FLOP matmul, 2 pJ/FLOP vector; sram 1 pJ/B and 1 W per MB of
    capacity (`sram_w_per_byte`); dram 20 pJ/B and 0.5 W."""
    return Energy(idle_w=10.0, matmul_j_per_flop={"fp32": 1e-12}, vector_j_per_flop=2e-12,
                  levels={"sram": LevelEnergy(1e-12, static_w_per_byte=sram_w_per_byte),
                          "dram": LevelEnergy(20e-12, static_w=0.5)})


def toy_runtime(dispatch_s: float = 1e-6, prefetch_depth: int = 0, **kw: object) -> Runtime:
    """1 us per kernel launch, no prefetch, every efficiency 1 (`kw`: other Runtime fields)."""
    return Runtime("toy", launch_s=dispatch_s, prefetch_depth=prefetch_depth, **kw)


def toy_options(runtime: Runtime | None = None, **kw: object) -> EngineOptions:
    """EngineOptions on the toy runtime (or `runtime`); `kw`: prefetch_depth, overlap, tp."""
    return EngineOptions(runtime=runtime or toy_runtime(), **kw)


def chain(n: int = 3, step: int = 0, w_bytes: int = 400 * KB, x_bytes: int = KB,
          flops: int = 2_000_000) -> nx.DiGraph:
    """n matmuls in a row: op i reads x_i (activation) and w_i (weight), writes x_{i+1}."""
    G = nx.DiGraph(phase="prefill" if step == 0 else "decode", step=step)
    for i in range(n):
        G.add_node(
            f"op{i}", kind="matmul", op="mm", layer=i, flops=flops, dtype="fp32",
            reads=(Tensor(f"x{i}", "activation", (1,), "fp32", x_bytes),
                   Tensor(f"w{i}", "weight", (1,), "fp32", w_bytes)),
            writes=(Tensor(f"x{i + 1}", "activation", (1,), "fp32", x_bytes),),
        )
        if i:
            G.add_edge(f"op{i - 1}", f"op{i}")
    return G
