"""memwall's simulator: hierarchy model, cost model, SimPy engine, trace and summaries.

`sim` knows nothing of Transformers beyond the op-graph contract in `sim.opgraph`.
"""

from .analytic import simulate_analytic
from .engine import EngineOptions, simulate
from .errors import MemwallError
from .hierarchy import Compute, Hierarchy, Interconnect, Level, Placement
from .hierarchy_file import HierarchyError, apply_overrides, hierarchy_to_dict, load_hierarchy
from .memory import tensor_footprint
from .opgraph import DTYPES, Tensor, check_op_graph
from .report import format_report
from .summary import Summary
from .trace import OpRecord
from . import cost

__all__ = [
    "Compute", "DTYPES", "EngineOptions", "Hierarchy", "HierarchyError", "Interconnect", "Level",
    "MemwallError", "OpRecord", "Placement", "Summary", "Tensor", "apply_overrides",
    "check_op_graph", "cost", "format_report", "hierarchy_to_dict", "load_hierarchy",
    "simulate", "simulate_analytic", "tensor_footprint",
]
