"""`run.py inspect` and `run.py export --perfetto` on a small traced run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from runs import HIER_DIR, simulate_spec

import workloads
from memwall import cli
from sim import TraceWriter, format_report, load_hierarchy, read_trace
from sim.inspection import Selection, inspect_trace, token_range


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """gpt2, prompt 8, generate 4 on hbm_accel, traced."""
    path = tmp_path_factory.mktemp("inspect") / "run.h5"
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=4)
    with TraceWriter(path, hier) as w:
        summary = simulate_spec(spec, hier, sinks=(w.add,))
        w.finish(summary)
    return path, summary


def test_inspect_prints_the_runs_report_first(traced, capsys):
    path, summary = traced
    assert cli.main(["inspect", str(path), "--top", "5"]) == 0
    out = capsys.readouterr().out
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    assert out.startswith(format_report(summary, hier, top=5))
    assert "op executions that stalled most" in out and "layer" in out and "step" in out


def test_inspect_json_has_breakdowns(traced, capsys):
    path, summary = traced
    assert cli.main(["inspect", str(path), "--json", "-"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["summary"]["n_ops"] == summary["n_ops"]
    assert [r["step"] for r in res["by_token"]] == [0, 1, 2, 3]
    assert sorted(r["layer"] for r in res["by_layer"]) == list(range(-1, 12))
    hbm = sum(r["bytes"]["hbm"] for r in res["by_layer"])
    assert hbm == summary["bytes_by_level"]["hbm"]
    worst = res["most_stalled"]
    assert worst == sorted(worst, key=lambda r: -r["stall_s"]) and worst[0]["op"] == "lm_head"


def test_filters(traced):
    path, summary = traced
    res = inspect_trace(str(path), Selection(tokens=(2, None), layer=3, kind="matmul"))
    assert [r["step"] for r in res["by_token"]] == [2, 3]
    assert [r["layer"] for r in res["by_layer"]] == [3]
    assert all(row["op"].startswith("h3.") for row in res["most_stalled"])
    t = read_trace(path, tokens=(2, None))
    kinds = dict(zip(t.ops["name"].tolist(), t.ops["kind"].tolist(), strict=True))
    assert {kinds[r["op"]] for r in res["summary"]["top_stalls"]} == {"matmul"}
    assert res["summary"]["n_ops"] < summary["n_ops"]


def test_token_range_syntax():
    assert token_range("3:7") == (3, 7)
    assert token_range(":7") == (None, 7)
    assert token_range("5") == (5, 6)


def test_bad_selection_is_one_line(traced, capsys):
    path, _ = traced
    assert cli.main(["inspect", str(path), "--tokens", "x:y"]) == 2
    assert cli.main(["inspect", str(path), "--tokens", "50:60"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("memwall: error: ") for e in err)


def test_export_perfetto(traced, tmp_path, capsys):
    path, _ = traced
    out = tmp_path / "t.json"
    assert cli.main(["export", str(path), "--perfetto", str(out)]) == 0
    doc = json.loads(out.read_text())
    ev = doc["traceEvents"]
    tracks = {e["args"]["name"] for e in ev if e["name"] == "thread_name"}
    assert {"compute", "dispatch", "interconnect", "hbm (memory)", "l2 (memory)"} <= tracks
    steps = {e["name"] for e in ev if e.get("cat") == "step"}
    assert steps == {"step 1", "step 2", "step 3"}  # default: the first decode steps
    slices = [e for e in ev if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in slices)
    assert cli.main(["export", str(path), "--perfetto", str(out), "--tokens", "0:1"]) == 0
    doc = json.loads(out.read_text())
    assert {e["name"] for e in doc["traceEvents"] if e.get("cat") == "step"} == {"step 0"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


@pytest.mark.parametrize("text", ["5:2", "3:3", "-1:4", ":0"])
def test_an_empty_or_negative_token_range_is_refused(text):
    from sim import MemwallError, token_range

    with pytest.raises(MemwallError, match="empty range"):
        token_range(text)


def test_inspection_does_not_depend_on_how_the_trace_is_read(traced, monkeypatch):
    path, _ = traced
    import sim.inspection

    sel = Selection(tokens=(1, None), kind="matmul")
    whole = inspect_trace(str(path), sel)
    monkeypatch.setattr(sim.inspection, "READ_ROWS", 13)
    assert inspect_trace(str(path), sel) == whole
    assert sum(r["n_ops"] for r in whole["by_token"]) == whole["summary"]["n_ops"]


SELECTIONS = [Selection(tokens=(2, 4), layer=3), Selection(kind="vector"),
              Selection(tokens=(1, None), kind="matmul"), Selection(layer=-1),
              Selection(tokens=(2, 4)), Selection(tokens=(0, 2))]


@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda s: s.describe())
def test_a_selection_reports_its_own_ops_and_its_shares_sum_to_100(traced, sel):
    """Every figure of a selection is a sum over the selected records (read back by hand
    here); compute and the stalls add up to its time; per-token figures only for whole
    steps, the prefill only when step 0 is selected."""
    path, _ = traced
    res = inspect_trace(str(path), sel)
    s, chosen = res["summary"], res["selection"]
    t = read_trace(path, tokens=sel.tokens)
    r, ops = t.records, t.ops
    keep = np.ones(len(r["op"]), bool)
    if sel.layer is not None:
        keep &= ops["layer"][r["op"]] == sel.layer
    if sel.kind is not None:
        keep &= ops["kind"][r["op"]] == sel.kind
    elapsed = (r["end_s"] - r["start_s"])[keep]
    assert s["n_ops"] == chosen["n_ops"] == keep.sum()
    assert chosen["of_ops"] == len(read_trace(path).records["op"])
    assert s["total_s"] == pytest.approx(elapsed.sum(), rel=1e-12) == chosen["time_s"]
    assert s["compute_s"] == pytest.approx(r["compute_s"][keep].sum(), rel=1e-12)
    parts = s["compute_s"] + sum(s["stall_s"].values())
    assert parts == pytest.approx(s["total_s"], rel=1e-9)  # the shares sum to 100%
    names = t.level_names
    for i, n in enumerate(names):
        assert s["bytes_by_level"][n] == r["bytes"][keep, i].sum()
        assert s["stall_s"][n] == pytest.approx(r["stall_s"][keep, i].sum(), abs=1e-15)
    l2 = names.index("l2")
    assert s["cache_lookup_bytes"]["l2"] == r["lookup_bytes"][keep, l2].sum()
    whole = sel.layer is None and sel.kind is None
    assert chosen["whole_steps"] is whole
    steps = sorted(set(r["step"][keep].tolist()))
    assert chosen["steps"] == [steps[0], steps[-1]] and chosen["n_steps"] == len(steps)
    if whole:
        decode = [e - b for k, b, e in zip(t.steps["step"], t.steps["start_s"],
                                           t.steps["end_s"], strict=True) if k > 0]
        assert s["decode_s_per_token"] == pytest.approx(sum(decode) / len(decode))
        assert s["bound_s"] <= s["total_s"]
    else:
        assert s["decode_s_per_token"] is s["tokens_per_s"] is s["bound_s"] is None
    if whole and 0 in steps:
        assert s["prefill_s"] == pytest.approx(t.steps["end_s"][0] - t.steps["start_s"][0])
    else:
        assert s["prefill_s"] is s["ttft_s"] is None


def test_the_report_of_a_selection_says_what_it_is_and_shows_no_per_token_figure(
        traced, capsys):
    path, _ = traced
    assert cli.main(["inspect", str(path), "--tokens", "2:4", "--layer", "3"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.startswith(f"trace {path}: selected tokens 2:4, layer 3: ")
    assert "op executions (steps 2-3)" in head
    assert "prefill" not in out and "tokens/s" not in out and "per token" not in out
    assert "no schedule beats" not in out and "achieved" not in out
    shares = [float(line.split("%")[0].split()[-1]) for line in out.splitlines()
              if line.startswith(("    compute ", "    stall "))]
    assert sum(shares) == pytest.approx(100, abs=0.1 * len(shares))
    assert cli.main(["inspect", str(path), "--tokens", "2:4"]) == 0
    out = capsys.readouterr().out
    assert "prefill" not in out and "decode (TPOT)" in out and "no schedule beats" in out
