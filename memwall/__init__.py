"""memwall: a discrete-event simulator of Transformer inference on memory hierarchies.

The Python API (the command line calls the same functions):

    import memwall
    hw = memwall.hierarchy("hbm_accel")          # bundled name, a path, YAML text or a dict
    sw = memwall.runtime("tensorrt-llm")         # the software stack, found the same ways
    big = hw.override({"memory.l2.capacity": "512 MiB"})   # same checks and messages as --set
    r = memwall.simulate("gpt2", big, prompt_len=128, gen_len=128, engine="des")
    r.decode_s_per_token, r.stall_s["hbm"], r.bound_by     # a frozen, typed RunResult
    r.to_dict()            # equal to the CLI's JSON summary, key for key
    print(r.report())      # the CLI's text report
    s = memwall.serve("llama2-7b", "h100_sxm", requests=200, rate=8)  # a ServeResult
    memwall.sweep("sweeps/tiered_dram.yaml", "out/tiered")   # a SweepResult
    memwall.validate()     # against validation/measured.csv: rows and MAPE
    memwall.paper.fig3()   # the paper's figures as rows; memwall.paper.plot_fig3 draws them
    memwall.measure.run("out/gpu")   # microbenchmarks on a local GPU -> a hierarchy file

`memwall` is the one place where `sim` (the simulator) and `workloads` (the models) meet;
neither imports it. Names load on first use, so `import memwall` is quick.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sim.errors import MemwallError
from sim.outfile import memwall_version

_LAZY = {  # public name -> (module, attribute)
    "hierarchy": ("memwall.inputs", "as_hierarchy"),
    "runtime": ("memwall.inputs", "as_runtime"),
    "workload": ("memwall.inputs", "as_workload"),
    "request": ("memwall.inputs", "request"),
    "Request": ("memwall.inputs", "Request"),
    "DEFAULTS": ("memwall.inputs", "DEFAULTS"),
    "ENGINES": ("memwall.inputs", "ENGINES"),
    "simulate": ("memwall.simulation", "simulate"),
    "run": ("memwall.simulation", "run"),
    "RunResult": ("memwall.result", "RunResult"),
    "serve": ("memwall.serving", "serve"),
    "ServeResult": ("memwall.serving", "ServeResult"),
    "serving": ("memwall.serving", None),
    "sweep": ("memwall.sweeps", "sweep"),
    "SweepResult": ("memwall.sweeps", "SweepResult"),
    "validate": ("memwall.validation", "validate"),
    "paper": ("memwall.paper", None),
    "measure": ("memwall.measure", None),
    "bundled": ("memwall.bundled", None),
    "simulation": ("memwall.simulation", None),
    "validation": ("memwall.validation", None),
}

__all__ = ["MemwallError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use
        return memwall_version()
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'memwall' has no attribute {name!r}")
    module = import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
