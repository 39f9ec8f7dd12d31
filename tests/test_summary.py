"""Summary: the same JSON, to the last bit, however its records are folded."""

from __future__ import annotations

import pytest
from runs import HIER_DIR, simulate_spec

import sim.summary
import workloads
from sim import OpRecord, Summary, load_hierarchy
from sim.trace import columns


@pytest.fixture(scope="module")
def gpt2_run() -> tuple[object, dict, list[OpRecord]]:
    """gpt2, prompt 8, generate 6 on hbm_accel: the hierarchy, the summary and its records."""
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=6)
    records: list[OpRecord] = []
    summary = simulate_spec(spec, hier, sinks=(records.append,))
    return hier, summary, records


RUN = {"precision": {"weights": "bf16", "activations": "bf16"}, "tp": 1, "batch": 1,
       "prompt_len": 8, "gen_len": 6}  # what the energy figures need of the run's inputs


def fold(hier: object, records: list[OpRecord]) -> dict:
    s = Summary(hier)
    for r in records:
        s.add(r)
    return s.result(dict(RUN))


@pytest.mark.parametrize("rows", [1, 7, 100, 10**6])
def test_any_fold_size_gives_the_same_summary(gpt2_run, monkeypatch, rows):
    hier, summary, records = gpt2_run
    monkeypatch.setattr(sim.summary, "_FOLD_VALUES", rows * len(OpRecord._fields))
    got = fold(hier, records)
    for k in ("params", *RUN):  # inputs, from the run's meta
        del got[k]
    assert got == {k: summary[k] for k in got}
    assert got["n_ops"] == len(records)


def test_records_given_as_columns_fold_as_records(gpt2_run):
    hier, _, records = gpt2_run
    a, b = len(records) // 3, 2 * len(records) // 3
    s = Summary(hier)
    s.add_columns(columns(records[:a]))
    for r in records[a:b]:
        s.add(r)
    s.add_columns(columns(records[b:]))
    s.add_columns(columns([]))
    assert s.result(dict(RUN)) == fold(hier, records)


def test_totals_are_those_of_the_records(gpt2_run):
    hier, summary, records = gpt2_run
    compute = 0.0
    for r in records:
        compute += r.compute_s
    assert summary["compute_s"] == compute
    assert summary["flops"] == sum(r.flops for r in records)
    assert summary["bytes_by_level"]["hbm"] == sum(r.bytes[-1] for r in records)
    assert summary["total_s"] == records[-1].end_s - records[0].start_s
    steps = [r for r in records if r.step == 0]
    assert summary["prefill_s"] == steps[-1].end_s - steps[0].start_s
    mine = [r for r in records if r.op == summary["top_stalls"][0]["op"]]
    assert summary["top_stalls"][0]["calls"] == len(mine)


def test_an_empty_summary():
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    s = Summary(hier).result({"workload": "none"})
    assert s["n_ops"] == 0 and s["total_s"] == 0.0 and s["prefill_s"] == 0.0
    assert s["decode_s_per_token"] is None and s["top_stalls"] == [] and s["phase_s"] == {}
