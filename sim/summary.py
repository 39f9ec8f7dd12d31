"""Summaries computed from the trace records (never from counters inside the engine)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from struct import pack
from typing import Any

import numpy as np

from . import energy, sampling
from .hierarchy import Hierarchy
from .trace import FIELDS, FIRST, LAST, SUM, WIDTH, OpRecord, Records, Totals

FOLD_ROWS = 8192  # records buffered before they are folded into the totals
_FOLD_VALUES = FOLD_ROWS * WIDTH
# what the summary reads of a record: the keys it groups by, and every field Totals reduces
_FOLDED = ("step", "phase", "op", "op_type", "kind",
           *(f.name for f in FIELDS if f.reduce in (SUM, FIRST, LAST)))


class Summary:
    """Fold OpRecords, as they stream, into per-run, per-phase, per-step and per-op totals.

    Records are buffered and folded FOLD_ROWS at a time through sim.trace.Totals, whose sums run
    one record at a time in record order: the result does not depend on how records were
    delivered (a run, or a trace read back in chunks).
    """

    def __init__(self, hier: Hierarchy, memory_efficiency: float = 1.0,
                 sample: sampling.Plan | None = None) -> None:
        """`memory_efficiency`: the runtime's fraction of each level's sustained bandwidth
        (Runtime.memory_efficiency), for the levels' busy time. `sample`: the plan of a run
        that ran only some decode steps (sim.sampling); each then stands for its weight in
        every total, and the result estimates the error this makes."""
        self.hier = hier
        self.memory_efficiency = memory_efficiency
        self.sample = sample
        self._weight = None if sample is None else _weights(sample)
        self.names = [lv.name for lv in hier.levels]
        n = len(self.names)
        self._run = Totals(n)  # one key, 0: the whole run
        self._phases = Totals(n, sums=("elapsed_s",))  # key: the phase's index in _phase
        self._steps = Totals(n, sums=("compute_s", "wait_s"))  # key: the step
        self._ops = Totals(n, sums=("elapsed_s", "compute_s", "wait_s"))  # key: _op index
        self._kinds = Totals(n, sums=("flops", "bytes", "mops_bytes", "elapsed_s"))  # energy
        self._kind: dict[str, int] = {}  # op kind -> key, in order of first use
        self._phase: dict[str, int] = {}  # phase name -> key, in order of first use
        self._op: dict[str, int] = {}  # op name -> key, in order of first use
        self._op_type: list[str] = []  # per op key
        self._pending = Records()  # records not folded yet
        self._values = self._pending.values

    def add(self, r: OpRecord) -> None:
        values = self._values
        values.extend(r)  # Records.add, inline
        if len(values) >= _FOLD_VALUES:
            self._fold()

    def add_columns(self, cols: Mapping[str, Any]) -> None:
        """Fold records given as columns (sim.trace.columns: str fields as sequences of str),
        after those added before."""
        self._fold()
        if cols and len(cols["step"]):
            self._add(cols)

    @property
    def n_ops(self) -> int:
        self._fold()
        return self._run.n_rows

    def _fold(self) -> None:
        if self._values:
            self._add(self._pending.columns(_FOLDED))

    def _add(self, cols: Mapping[str, Any]) -> None:
        op_keys = _ids(cols["op"], self._op)
        types = self._op_type
        if len(self._op) > len(types):  # new ops: their types, in order of first use
            for k, op_type in zip(op_keys.tolist(), cols["op_type"], strict=True):
                if k == len(types):
                    types.append(op_type)
        w = None
        if self._weight is not None:
            steps = np.asarray(cols["step"])
            w = np.where(steps < len(self._weight), self._weight[np.minimum(
                steps, len(self._weight) - 1)], 1)
        self._run.add(np.zeros(len(op_keys), dtype=np.int64), cols, w)
        self._phases.add(_ids(cols["phase"], self._phase), cols, w)
        self._steps.add(cols["step"], cols)  # each step as it ran
        self._ops.add(op_keys, cols, w)
        self._kinds.add(_ids(cols["kind"], self._kind), cols, w)


    # -- results ---------------------------------------------------------------------------
    def busy_s(self) -> dict[str, float]:
        """Total busy time of every resource: the bound is the largest."""
        self._fold()
        run = self._run.row(0)
        busy = {"compute": run["compute_s"], "dispatch": run["dispatch_s"]}
        for lv, b in zip(self.hier.levels, run["bytes"], strict=True):
            busy[lv.name] = b / (lv.sustained_bytes_per_s * self.memory_efficiency)
        busy["interconnect"] = run["interconnect_s"]
        return busy

    def result(self, meta: dict[str, Any], top: int = 10) -> dict[str, Any]:
        """The JSON summary, in SI units (s, bytes, FLOPs). `meta` supplies the run's inputs
        (workload, hierarchy, batch, prompt_len, gen_len, tp, params, ...)."""
        self._fold()
        run = self._run.row(0)
        st = self._steps
        spans = dict(zip(st.keys, zip(st["start_s"].tolist(), st["end_s"].tolist(),
                                      strict=True), strict=True))
        step_s = {k: e - s for k, (s, e) in sorted(spans.items())}
        prefill_s = step_s.get(0, 0.0)
        plan = self.sample
        if plan is None:
            decode = [v for k, v in step_s.items() if k > 0]
            decode_s = sum(decode) / len(decode) if decode else None
            total_s, error_s = run["end_s"] - run["start_s"], 0.0
        else:  # each sampled step stands for its block
            weighted = sum(plan.weight(k) * v for k, v in step_s.items() if k > 0)
            decode_s = weighted / plan.n_decode
            total_s = prefill_s + weighted
            error_s = sampling.error_bound(plan, step_s)
        busy = self.busy_s()
        bound_by = max(busy, key=busy.__getitem__)
        stall = dict(zip(self.names, run["stall_s"], strict=True))
        stall["dispatch"] = run["dispatch_s"]
        stall["interconnect"] = run["interconnect_s"]
        phase_names = list(self._phase)
        ph = self._phases
        phase_s = {phase_names[k]: v for k, v in zip(ph.keys, ph["elapsed_s"].tolist(),
                                                     strict=True)}
        t = self._ops
        op_names = list(self._op)
        by_op = {op_names[k]: [n, e, c, w] for k, n, e, c, w in zip(
            t.keys, t["n"].tolist(), t["elapsed_s"].tolist(), t["compute_s"].tolist(),
            t["wait_s"].tolist(), strict=True)}
        by_type: dict[str, list[float]] = {}
        for op, row in by_op.items():
            acc = by_type.setdefault(self._op_type[self._op[op]], [0, 0.0, 0.0, 0.0])
            for i, v in enumerate(row):
                acc[i] += v
        ranked = sorted(by_op.items(), key=lambda kv: (-kv[1][3], kv[0]))[:top]
        flops, mops = run["flops"], run["mops_bytes"]
        batch = meta.get("batch") or 1
        out = dict(meta)
        out.update(
            params=meta.get("params"),
            flops=flops,
            mops_bytes=mops,
            arithmetic_intensity=flops / mops if mops else None,
            prefill_s=prefill_s,
            ttft_s=prefill_s if "prefill" in self._phase else None,  # its LM head: token 1
            decode_s_per_token=decode_s,
            tpot_s=decode_s,
            tokens_per_s=1.0 / decode_s if decode_s else None,
            throughput_tokens_per_s=batch / decode_s if decode_s else None,
            total_s=total_s,
            compute_s=run["compute_s"],
            stall_s=stall,
            bytes_by_level=dict(zip(self.names, run["bytes"], strict=True)),
            **self._caches(run),
            bound_s=busy[bound_by],
            bound_by=bound_by,
            verdict=f"memory-bound ({bound_by})" if bound_by in self.names else f"{bound_by}-bound",
            busy_s=busy,
            phase_s=phase_s,
            **self._energy(meta, total_s),
            n_ops=run["n"],
            decode_steps_simulated=sum(1 for k in step_s if k > 0),
            sampling_error_s=error_s,
            top_stalls=[
                {"op": k, "calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in ranked
            ],
            by_op_type={
                k: {"calls": int(v[0]), "elapsed_s": v[1], "compute_s": v[2], "stall_s": v[3]}
                for k, v in sorted(by_type.items())
            },
        )
        return out


    def _energy(self, meta: dict[str, Any], total_s: float) -> dict[str, Any]:
        """energy_j, energy_j_by, joules_per_token and average_power_w, charged from the
        records summed per op kind (sim.energy); None each without energy figures. Tokens:
        those generated, or an encoder's input tokens; power: the whole group's."""
        t = energy.tariff(self.hier, meta.get("precision"), meta.get("tp") or 1)
        if t is None or not self._kind:
            return {"energy_j": None, "energy_j_by": None, "joules_per_token": None,
                    "average_power_w": None}
        k = self._kinds
        names = list(self._kind)
        by = energy.total(t, {"kind": [names[i] for i in k.keys], "flops": k["flops"],
                              "bytes": k["bytes"], "mops_bytes": k["mops_bytes"],
                              "elapsed_s": k["elapsed_s"]})
        joules = sum(by.values())
        per = meta.get("gen_len") or meta.get("prompt_len") or 0
        batch = meta.get("batch") or 1
        # a serving trace's lengths are distributions ("uniform:128:2048"): no count per token
        tokens = batch * per if isinstance(per, int) and isinstance(batch, int) else 0
        return {"energy_j": joules, "energy_j_by": by,
                "joules_per_token": joules / tokens if tokens else None,
                "average_power_w": joules / total_s if total_s > 0 else None}

    def _caches(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per level with a cache policy: bytes read through it, bytes it served, and their
        ratio (None if nothing looked it up)."""
        cached = [i for i, lv in enumerate(self.hier.levels) if lv.policy != "none"]
        looked = {self.names[i]: run["lookup_bytes"][i] for i in cached}
        hits = {self.names[i]: run["hit_bytes"][i] for i in cached}
        return {"cache_lookup_bytes": looked, "cache_hit_bytes": hits,
                "cache_hit_rate": {k: hits[k] / v if v else None for k, v in looked.items()}}


def _weights(plan: sampling.Plan) -> np.ndarray:
    """step -> its weight, as an array indexed by step (steps past its end weigh 1)."""
    w = np.ones(max(plan.steps) + 1, dtype=np.int64)
    for step, weight in plan.weights.items():
        w[step] = weight
    return w


def _ids(names: Sequence[str], known: dict[str, int]) -> np.ndarray:
    """The key of each name in `known`, a name not seen before getting the next."""
    try:
        return np.frombuffer(pack(f"{len(names)}q", *map(known.__getitem__, names)), np.int64)
    except KeyError:
        return np.array([known.setdefault(x, len(known)) for x in names], dtype=np.int64)
