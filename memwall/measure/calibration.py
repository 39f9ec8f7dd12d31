"""From raw samples to the figures of a hierarchy file, each with what measured it.

`calibrate` is the one place that decides which figure comes from which measurement (or
datasheet, or driver report) and says so in the figure's `how`, which becomes the comment
beside it in hierarchy.yaml. Rules: a figure that was measured says how; with a datasheet
peak known, the peak is written and `efficiency` = measured / peak, else the measured figure
is the bandwidth and efficiency is 1; a figure neither measured nor in a datasheet is not
guessed: its level is left out, or the calibration fails naming what is missing.

Datasheets (`for_device`): the figures of the bundled hierarchy files, which cite each one
(NVIDIA's H200, H100 and A100 datasheets and whitepapers); only the datasheet-grade ones are
taken: dense peaks per precision, the FP32 vector peak, the clock, HBM bandwidth and capacity,
per-SM L1 capacity, and, as labelled estimates, the register file's bandwidth and latency,
which no software can time. Names are matched exactly: "NVIDIA H200" is how the driver names
the SXM part; the H200 NVL and the PCIe H100 have other clocks and bandwidths, and get no
datasheet rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from memwall.inputs import as_hierarchy
from sim import Hierarchy, Level
from sim.units import format_quantity

from .analysis import (
    COMPUTE_M,
    TILES,
    GemmFit,
    GemmPoint,
    Knee,
    find_knee,
    fit_gemm,
    gemv_bandwidth,
    latency_windows,
    plateau,
)
from .samples import Sample, select
from .timer import Device, MeasureError

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


@dataclass(frozen=True)
class Figure:
    value: object  # SI float for kinds of sim.units; a fraction, an int, a tile, a name
    kind: str  # size, bandwidth, time, frequency, rate, fraction, count, cycles, tile, word
    how: str  # the comment: what measured it, or where it comes from


@dataclass(frozen=True)
class LevelFigures:
    name: str
    capacity: Figure
    bandwidth: Figure
    latency: Figure
    efficiency: Figure | None = None
    policy: str | None = None


@dataclass(frozen=True)
class Calibration:
    device: Device
    datasheet: str | None  # the bundled file its datasheet figures come from
    clock: Figure
    peaks: dict[str, Figure]
    vector: Figure
    vector_efficiency: Figure | None
    dispatch: Figure  # eager
    dispatch_graph: Figure  # replayed from a CUDA graph
    units: Figure
    tile: Figure | None
    levels: list[LevelFigures]
    knee: Knee | None
    gemm: GemmFit | None
    notes: list[str] = field(default_factory=list)  # what was not measured, and why


def _q(value: float, kind: str) -> str:
    return format_quantity(value, kind)


def _efficiency(measured: float, peak: float, kind: str, what: str, aside: str = "") -> Figure:
    """measured / peak as an efficiency figure (capped at 1, saying so)."""
    frac = measured / peak
    return Figure(min(1.0, round(frac, 3)), "fraction",
                  f"measured: {what}, {_q(measured, kind)} = {frac:.3f} of the peak"
                  + (" (capped at 1)" if frac > 1 else "") + (f" ({aside})" if aside else ""))


def calibrate(samples: Sequence[Sample], device: Device, sheet: Datasheet | None) -> Calibration:
    """The hierarchy figures of `samples`; MeasureError naming every missing measurement."""
    missing = [what for bench, what in (("stream", "streaming bandwidth"),
                                        ("launch", "launch overhead"), ("gemm", "GEMM sweep"))
               if not select(samples, bench)]
    if missing:
        raise MeasureError(f"no {', '.join(missing)} measured (did --budget-s run out?); "
                           "expected them to make a hierarchy; raw figures in measurements.csv")
    notes: list[str] = []
    knee, hbm_read, l2_level = _l2(samples, device, notes)
    l2_bytes = float(l2_level.capacity.value)
    points = [GemmPoint(s.dtype, s.m, s.n, s.k, s.stats.median) for s in select(samples, "gemm")]
    gemm = fit_gemm(points, device.units, hbm_read)
    if gemm is None:
        raise MeasureError("the GEMM sweep has no point with M >= "
                           f"{COMPUTE_M}; expected its compute-bound end")
    levels = [*_registers(device, sheet, notes), _l1(samples, device, sheet, l2_bytes),
              l2_level, _hbm(samples, device, sheet, hbm_read, l2_bytes)]
    peaks = {}
    for d, peak in gemm.peaks.items():
        ds = sheet.peaks.get(d) if sheet else None
        tail = f"; {peak / ds:.2f} of the datasheet's {_q(ds, 'rate')}" if ds else ""
        peaks[d] = Figure(peak, "rate", f"measured: cuBLAS GEMM plateau at full waves (best "
                          f"{_q(gemm.best[d], 'rate')} raw, M >= {COMPUTE_M}){tail}")
    if sheet:
        notes += [f"{d} peak (the GEMM sweep could not run it here)" if d not in ("int8", "int4")
                  else f"{d} peak (no {d} GEMM in the sweep); {d} matmuls run at the next "
                       "wider precision's rate (sim.cost.WIDER)"
                  for d in sheet.peaks if d not in peaks]
    return Calibration(
        device=device, datasheet=sheet.cite() if sheet else None,
        clock=_clock(device, sheet), peaks=peaks, **_vector(samples, sheet, notes),
        dispatch=_launch(samples, "eager"), dispatch_graph=_launch(samples, "graph"),
        units=Figure(device.units, "count", "driver-reported SM count; a matmul's tiles run "
                     "in waves over them"),
        tile=Figure(gemm.tile, "tile", _tile_how(gemm)), levels=levels, knee=knee, gemm=gemm,
        notes=notes)


def _tile_how(g: GemmFit) -> str:
    nxt = (f"; next best {list(g.runner_up[0])} at {100 * g.runner_up[1]:.1f}%"
           if g.runner_up else "")
    return (f"fitted: of {len(TILES)} candidate tiles, the one whose wave model best "
            f"matches the GEMM sweep (median error {100 * g.error:.1f}% on {g.scored} "
            f"compute-bound points{nxt})")


def _clock(device: Device, sheet: Datasheet | None) -> Figure:
    if sheet:
        return Figure(sheet.clock_hz, "frequency", f"datasheet ({sheet.cite()}); latencies "
                      "below are in ns, so nothing depends on it")
    if device.clock_hz:
        return Figure(device.clock_hz, "frequency", "driver-reported maximum SM clock; "
                      "latencies below are in ns, so nothing depends on it")
    raise MeasureError(f"{device.name}: the driver reports no SM clock and memwall has no "
                       "datasheet for it; expected one of the two for compute.clock")


def _vector(samples: Sequence[Sample], sheet: Datasheet | None, notes: list[str]
            ) -> dict[str, Figure | None]:
    (s, *_) = select(samples, "vector") or (None,)
    if s is None:
        if sheet is None:
            raise MeasureError("no vector rate measured and no datasheet; expected the fp32 "
                               "multiply chains to have run")
        notes.append("vector efficiency (the multiply chains did not run): 1")
        return {"vector": Figure(sheet.vector_flops_per_s, "rate", f"datasheet FP32 peak "
                                 f"({sheet.cite()}); not measured"), "vector_efficiency": None}
    what = "fp32 multiply chains in registers (one FLOP per instruction, as elementwise ops)"
    if sheet is None:
        return {"vector": Figure(s.rate, "rate", f"measured: {what}"), "vector_efficiency": None}
    return {"vector": Figure(sheet.vector_flops_per_s, "rate", f"datasheet FP32 peak, FMA "
                             f"counted as 2 FLOPs ({sheet.cite()})"),
            "vector_efficiency": _efficiency(s.rate, sheet.vector_flops_per_s, "rate", what)}


def _launch(samples: Sequence[Sample], variant: str) -> Figure:
    (s, *_) = select(samples, "launch", variant=variant) or (None,)
    if s is None:
        raise MeasureError(f"no {variant} launch overhead measured; expected it for "
                           "compute.dispatch")
    how = {"eager": "back-to-back one-element kernels launched eagerly by PyTorch (host "
                    "launch plus framework, per kernel)",
           "graph": "the same kernels replayed from a captured CUDA graph, per kernel"}
    return Figure(s.stats.median, "time", f"measured: {how[variant]}")


def _l2(samples: Sequence[Sample], device: Device, notes: list[str]
        ) -> tuple[Knee | None, float, LevelFigures]:
    """The L2 knee of the read sweep, the memory plateau behind it, and the L2 level."""
    reads = select(samples, "stream", variant="read")
    sizes, rates = [s.working_set_bytes for s in reads], [s.rate for s in reads]
    knee = find_knee(sizes, rates)
    driver = (f"; the driver reports {_q(device.l2_bytes, 'size')}" if device.l2_bytes else "")
    if knee is not None:
        cap = Figure(knee.capacity_bytes, "size", f"measured: the knee of the read sweep, "
                     f"where bandwidth falls halfway (in log) to memory's{driver}")
        cache, memory = knee.cache_bytes_per_s, knee.memory_bytes_per_s
    elif device.l2_bytes:
        notes.append("no L2 knee in the read sweep; L2 capacity is the driver's figure")
        cap = Figure(device.l2_bytes, "size", "driver-reported (no knee in the read sweep)")
        cache = plateau(sizes, rates, 0, device.l2_bytes / 2) or max(rates)
        memory = plateau(sizes, rates, 8 * device.l2_bytes, float("inf")) or min(rates)
    else:
        raise MeasureError("no L2 knee in the read sweep and no driver-reported L2 size; "
                           "expected one of the two")
    bw = Figure(cache, "bandwidth", "measured: read sweep plateau below the knee, L1 "
                "bypassed (efficiency 1: no datasheet figure for L2)")
    lat = _latency(samples, "l2", device, float(cap.value))
    return knee, memory, LevelFigures("l2", cap, bw, lat, policy="lru")


def _latency(samples: Sequence[Sample], level: str, device: Device, l2_bytes: float,
             per_unit_l1: float | None = None) -> Figure:
    """The median chase latency over the working sets that hit `level`
    (latency_windows)."""
    l1 = per_unit_l1 or float(device.shared_per_unit_bytes or 256 * 1024)
    lo, hi = latency_windows(l1, l2_bytes)[level]
    inside = [s for s in select(samples, "chase") if lo <= s.working_set_bytes <= hi]
    if not inside:
        raise MeasureError(f"no pointer chase between {_q(max(lo, 1), 'size')} and "
                           f"{_q(hi, 'size')}; expected one for the {level} latency")
    sizes = [s.working_set_bytes for s in inside]
    value = plateau(sizes, [s.stats.median for s in inside], lo, hi)
    return Figure(value, "time", f"measured: one-thread random pointer chase, median of "
                  f"{len(sizes)} working sets from {_q(min(sizes), 'size')} to "
                  f"{_q(max(sizes), 'size')}")


def _registers(device: Device, sheet: Datasheet | None, notes: list[str]) -> list[LevelFigures]:
    if sheet is None:
        notes.append("registers (no software can time them, and there is no datasheet): "
                     "the level is left out")
        return []
    r = sheet.level("registers")
    if device.registers_per_unit:
        cap = Figure(device.registers_per_unit * 4 * device.units, "size",
                     f"driver-reported: {device.registers_per_unit} 32-bit registers per SM "
                     f"x {device.units} SMs")
    else:
        cap = Figure(r.capacity_bytes, "size", f"datasheet ({sheet.cite()})")
    return [LevelFigures("registers", cap,
                         Figure(r.bandwidth_bytes_per_s, "bandwidth", f"estimate from "
                                f"{sheet.cite()} (not measurable from software)"),
                         Figure(round(r.latency_s * sheet.clock_hz), "cycles",
                                f"estimate from {sheet.cite()} (not measurable from software)"))]


def _l1(samples: Sequence[Sample], device: Device, sheet: Datasheet | None,
        l2_bytes: float) -> LevelFigures:
    if sheet:
        cap_bytes = sheet.level("l1").capacity_bytes
        cap = Figure(cap_bytes, "size", f"datasheet L1/shared per SM x SMs ({sheet.cite()})")
    elif device.shared_per_unit_bytes:
        cap_bytes = device.shared_per_unit_bytes * device.units
        cap = Figure(cap_bytes, "size", f"driver-reported shared memory per SM x "
                     f"{device.units} SMs (the L1 shares that SRAM)")
    else:
        raise MeasureError("no L1 size: no datasheet and no driver-reported shared memory")
    (s, *_) = select(samples, "l1") or (None,)
    if s is None:
        raise MeasureError("no L1 bandwidth measured; expected the L1 reread to have run")
    bw = Figure(s.rate, "bandwidth", "measured: every SM rereading a slice of its own L1 "
                "(efficiency 1: no datasheet figure)")
    return LevelFigures("l1", cap, bw,
                        _latency(samples, "l1", device, l2_bytes, cap_bytes / device.units))


def _hbm(samples: Sequence[Sample], device: Device, sheet: Datasheet | None, read: float,
         l2_bytes: float) -> LevelFigures:
    """HBM: the read plateau behind the L2 (write and copy named in the comment), against
    the datasheet peak where there is one."""
    others = []
    for kind in ("write", "copy"):
        far = [s.rate for s in select(samples, "stream", variant=kind)
               if s.working_set_bytes >= 8 * l2_bytes]
        if far:
            others.append(f"{kind} {_q(sorted(far)[len(far) // 2], 'bandwidth')}")
    gemv = gemv_bandwidth([GemmPoint(s.dtype, s.m, s.n, s.k, s.stats.median)
                           for s in select(samples, "gemm")], l2_bytes)
    if gemv:
        others.append(f"M = 1 GEMVs {_q(gemv, 'bandwidth')}")
    aside = ", ".join(others)
    cap = Figure(device.memory_bytes, "size", "driver-reported device memory" +
                 (f" (datasheet {_q(sheet.level('hbm').capacity_bytes, 'size')})"
                  if sheet else ""))
    lat = _latency(samples, "hbm", device, l2_bytes)
    what = "read sweep plateau at >= 8x the L2 capacity"
    if sheet:
        peak = sheet.level("hbm").bandwidth_bytes_per_s
        return LevelFigures("hbm", cap, Figure(peak, "bandwidth", f"datasheet ({sheet.cite()})"),
                            lat, _efficiency(read, peak, "bandwidth", what, aside))
    return LevelFigures("hbm", cap, Figure(read, "bandwidth", f"measured: {what} (efficiency "
                                           f"1: no datasheet peak{'; ' + aside if aside else ''})"),
                        lat)
