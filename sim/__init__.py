"""memwall's simulator: hierarchy model, cost model, SimPy engine, trace and summaries.

`sim` knows nothing of Transformers beyond the op-graph contract in `sim.opgraph`. Both engines
plan ops with `sim.planning`; the analytic one never imports the SimPy one.
"""

from . import cost
from .analytic import simulate_analytic
from .errors import MemwallError
from .hierarchy import Compute, Hierarchy, Interconnect, Level, Placement
from .hierarchy_file import HierarchyError, apply_overrides, hierarchy_to_dict, load_hierarchy
from .memory import tensor_footprint
from .opgraph import DTYPES, Tensor, check_op_graph
from .planning import EngineOptions
from .report import format_report
from .summary import Summary
from .trace import OpRecord

__all__ = [
    "Compute", "DTYPES", "EngineOptions", "Hierarchy", "HierarchyError", "Interconnect", "Level",
    "MemwallError", "OpRecord", "Placement", "Summary", "Tensor", "apply_overrides",
    "check_op_graph", "cost", "format_report", "hierarchy_to_dict", "load_hierarchy",
    "simulate", "simulate_analytic", "tensor_footprint",
    # traces (sim.trace_file, sim.trace_reader, sim.inspection, sim.perfetto, sim.plot)
    "Selection", "Trace", "TraceFileError", "TraceWriter", "export_perfetto",
    "format_inspection", "inspect_trace", "iter_records", "op_totals", "plot_trace",
    "read_trace", "token_range",
]

# The SimPy engine loads on first use, so an analytic run never imports SimPy; trace names load
# h5py (and plots matplotlib) on first use, so a run without --trace skips them.
_LAZY = {
    "simulate": "engine",
    "TraceWriter": "trace_file", "Trace": "trace_reader", "TraceFileError": "trace_reader",
    "iter_records": "trace_reader", "op_totals": "trace_reader", "read_trace": "trace_reader",
    "Selection": "inspection", "format_inspection": "inspection", "inspect_trace": "inspection",
    "token_range": "inspection", "export_perfetto": "perfetto", "plot_trace": "plot",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
