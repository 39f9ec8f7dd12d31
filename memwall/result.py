"""RunResult: the outcome of one simulation, frozen and typed, in SI units.

Its fields are the keys of the JSON summary (`memwall --json`), in that order, and
`to_dict()` gives that summary back exactly: the command line writes `to_dict()`, so the two
cannot disagree. Mappings are read-only views; lists are tuples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from sim import Hierarchy, format_report

Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class RunResult:
    """One simulated run. Times in s, sizes in bytes, rates per s; see the README's JSON
    summary section for each key."""

    workload: str
    hierarchy: str  # the hierarchy's name (the device itself is `design`)
    engine: str
    arch: str  # decoder | encoder
    batch: int
    prompt_len: int
    gen_len: int
    tp: int
    runtime: str  # the software stack's name (runtimes/<name>.yaml)
    fusion: str
    precision: Mapping[str, str]  # weights, activations, kv_cache (, embeddings)
    routing: str | None  # uniform, zipf:S or file (a mixture of experts; None otherwise)
    seed: int | None  # of the random routing draws (None: dense, or a routing file)
    prefetch_depth: int
    overlap: bool
    params: int
    machine_balance: float  # FLOP/B the device could feed from the weights' home
    flops: int
    mops_bytes: int
    arithmetic_intensity: float | None
    prefill_s: float
    ttft_s: float | None  # time to first token: the prefill, whose LM head yields it
    decode_s_per_token: float | None
    tpot_s: float | None  # time per output token: decode_s_per_token
    tokens_per_s: float | None  # per sequence
    throughput_tokens_per_s: float | None  # all sequences of the batch
    total_s: float
    compute_s: float
    stall_s: Mapping[str, float]  # level, dispatch, interconnect -> s
    bytes_by_level: Mapping[str, int]
    cache_lookup_bytes: Mapping[str, int]  # level with a cache policy -> bytes read through it
    cache_hit_bytes: Mapping[str, int]  # -> bytes its cache served
    cache_hit_rate: Mapping[str, float | None]  # -> served / looked up
    bound_s: float
    bound_by: str
    verdict: str
    busy_s: Mapping[str, float]
    phase_s: Mapping[str, float]
    energy_j: float | None  # all devices; None: the hierarchy has no energy figures
    energy_j_by: Mapping[str, float] | None  # compute, each level, interconnect, static -> J
    joules_per_token: float | None  # energy_j per generated token (encoder: per input token)
    average_power_w: float | None  # energy_j / total_s, the whole group
    n_ops: int  # op executions (in a sampled run, those the run stands for)
    decode_steps_simulated: int  # decode steps that ran (all, unless decode_samples)
    sampling_error_s: float  # estimated error of total_s from sampling (0: every step ran)
    top_stalls: tuple[Mapping[str, Any], ...]
    by_op_type: Mapping[str, Mapping[str, Any]]
    provenance: Mapping[str, Any]
    design: Hierarchy = field(repr=False, compare=False)  # the device simulated
    records: Columns | None = field(default=None, repr=False, compare=False)  # simulate(...,
    #                                                       records=True): per-op columns

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], design: Hierarchy,
                     records: Columns | None = None) -> RunResult:
        """The result of a JSON summary (every key, nothing else)."""
        keys = summary_keys()
        missing = [k for k in keys if k not in summary]
        extra = [k for k in summary if k not in keys]
        if missing or extra:
            raise ValueError(f"summary keys differ from RunResult: missing {missing}, "
                             f"unknown {extra}")
        return cls(**{k: frozen(summary[k]) for k in keys}, design=design, records=records)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary, key for key as `memwall --json` writes it."""
        return {k: plain(getattr(self, k)) for k in summary_keys()}

    def report(self, top: int = 5) -> str:
        """The command line's text report."""
        return format_report(self.to_dict(), self.design, top=top)


def summary_keys() -> tuple[str, ...]:
    """The JSON summary's keys, in order: RunResult's fields but `design` and `records`."""
    return tuple(f.name for f in dataclasses.fields(RunResult)
                 if f.name not in ("design", "records"))


def frozen(x: Any) -> Any:
    """`x` with mappings read-only and lists tuples, as a frozen result holds it."""
    if isinstance(x, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(frozen(v) for v in x)
    return x


def plain(x: Any) -> Any:
    """`x` (as `frozen` made it) as JSON-ready dicts and lists."""
    if isinstance(x, Mapping):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [plain(v) for v in x]
    return x
