"""`memwall measure`: calibrate a hierarchy file on the local GPU with microbenchmarks.

    import memwall
    m = memwall.measure.run("out/gpu", models=True, budget_s=360)   # needs memwall-sim[gpu]
    print(m.summary())          # the figures, and what the budget cut short
    m.calibration.levels        # every figure with `how` it was measured

Modules: `timer` (the Timer a GPU answers, and the CUDA one's checks), `cuda` (the CUDA
Timer: PyTorch and Triton, imported only when a GPU is timed), `kernels` (its Triton
kernels), `decoder` (random-weight models of the presets, for the model runs), `plan` (what
is timed, in which order), `samples` (the raw records and measurements.csv), `analysis`
(knees, plateaus, the GEMM fit), `calibration` (the known devices' datasheets, and which
figure comes from which measurement), `writer` (the files), `session` (stages within a
budget).
Everything but `cuda`, `kernels` and `decoder` is pure Python and runs without a GPU.
"""

from __future__ import annotations

from .analysis import GemmFit, Knee, find_knee, fit_gemm
from .calibration import Calibration, Figure, calibrate
from .samples import Sample, read_csv
from .session import Measurement, run
from .timer import Device, MeasureError, Timer, cuda_timer

__all__ = ["Calibration", "Device", "Figure", "GemmFit", "Knee", "MeasureError", "Measurement",
           "Sample", "Timer", "calibrate", "cuda_timer", "find_knee", "fit_gemm",
           "read_csv", "run"]
