"""Transformer workloads: presets, Hugging Face config import, op graphs and their counts, and
the routing of mixtures of experts.

Imports from `sim` only the op-graph contract (sim.opgraph) and sim.errors.
"""

from workloads.counts import (
    Counts,
    RunCounts,
    describe,
    format_describe,
    graph_counts,
    kv_cache_bytes,
    op_counts,
    run_counts,
)
from workloads.fusion import FUSIONS, fuse, fusion_groups
from workloads.graph import build_phase, final_phase, n_phases, phases
from workloads.hf_config import HFConfigError, from_hf_config, parse_hf_config
from workloads.model import (
    ModelConfig,
    Precision,
    WorkloadError,
    compute_dtype,
    parameter_shapes,
    tensor_bytes,
)
from workloads.presets import PRESETS, load_workload, preset
from workloads.routing import Routing, RoutingError, parse_routing, parse_routing_file
from workloads.spec import RunSpec

__all__ = [
    "FUSIONS", "PRESETS", "Counts", "HFConfigError", "ModelConfig", "Precision", "Routing",
    "RoutingError", "RunCounts", "RunSpec", "WorkloadError", "build_phase", "compute_dtype",
    "describe", "final_phase", "format_describe", "from_hf_config", "fuse", "fusion_groups",
    "graph_counts", "kv_cache_bytes", "load_workload", "n_phases", "op_counts",
    "parameter_shapes", "parse_hf_config", "parse_routing", "parse_routing_file", "phases",
    "preset", "run_counts", "tensor_bytes",
]
