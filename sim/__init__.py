"""memwall's simulator: hierarchy model, cost model, SimPy engine, trace and summaries.

`sim` knows nothing of Transformers beyond the op-graph contract in `sim.opgraph`. Both engines
plan ops with `sim.planning`; the analytic one never imports the SimPy one.
Every public name below is importable from `sim`; each module loads on first use, so
importing one name (say `sim.errors.MemwallError`) costs no more than that module, and a run
without --trace never loads h5py, nor one without plots matplotlib.
"""

from importlib import import_module

_LAZY = {  # public name -> module of sim that defines it
    **dict.fromkeys(("AnalyticDevice", "simulate_analytic"), "analytic"),
    **dict.fromkeys(("Device", "simulate"), "engine"),
    **dict.fromkeys(("EngineOptions", "OpFacts", "check_tp"), "planning"),
    **dict.fromkeys(("MemwallError",), "errors"),
    **dict.fromkeys(("Compute", "Energy", "Hierarchy", "Interconnect", "Level", "LevelEnergy",
                     "Placement"), "hierarchy"),
    **dict.fromkeys(("HierarchyError", "apply_overrides", "hierarchy_from_data",
                     "hierarchy_to_dict", "load_hierarchy", "parse_hierarchy"),
                    "hierarchy_file"),
    **dict.fromkeys(("Memory", "tensor_footprint"), "memory"),
    **dict.fromkeys(("DTYPES", "Tensor", "check_op_graph"), "opgraph"),
    **dict.fromkeys(("format_report",), "report"),
    **dict.fromkeys(("Summary",), "summary"),
    **dict.fromkeys(("OpRecord",), "trace"),
    **dict.fromkeys(("OpTable",), "op_table"),
    # traces and their readers, inspection, export and plots
    **dict.fromkeys(("TraceWriter",), "trace_file"),
    **dict.fromkeys(("Trace", "TraceFileError", "iter_records", "op_totals", "read_trace"),
                    "trace_reader"),
    **dict.fromkeys(("Selection", "format_inspection", "inspect_trace", "token_range"),
                    "inspection"),
    **dict.fromkeys(("export_perfetto",), "perfetto"),
    **dict.fromkeys(("plot_trace", "trace_figure"), "plot"),
}
_MODULES = ("cost", "energy", "sampling")  # submodules exported by name

__all__ = sorted([*_LAZY, *_MODULES])


def __getattr__(name: str) -> object:
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
