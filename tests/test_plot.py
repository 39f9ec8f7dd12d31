"""`run.py plot`: each picture is a valid, non-blank PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from runs import HIER_DIR, simulate_spec

import workloads
from memwall import cli
from sim import MemwallError, TraceWriter, load_hierarchy, plot_trace

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gpt2, prompt 8, generate 4 on hbm_accel, traced."""
    path = tmp_path_factory.mktemp("plot") / "run.h5"
    hier = load_hierarchy("hbm_accel.yaml", search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=4)
    with TraceWriter(path, hier) as w:
        w.finish(simulate_spec(spec, hier, sinks=(w.add,)))
    return path


@pytest.mark.parametrize("kind", ["roofline", "breakdown", "timeline"])
def test_plot_is_a_valid_nonblank_png(traced, tmp_path, kind):
    from matplotlib.image import imread

    out = tmp_path / f"{kind}.png"
    assert cli.main(["plot", str(traced), "--kind", kind, "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    pixels = imread(out)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.var() > 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_plot_a_token_window(traced, tmp_path):
    out = tmp_path / "t.png"
    plot_trace(str(traced), "timeline", out, tokens=(0, 1))
    assert out.read_bytes()[:8] == PNG


def test_unknown_kind(traced, tmp_path):
    with pytest.raises(MemwallError, match="roofline"):
        plot_trace(str(traced), "pie", tmp_path / "x.png")


def _trace(tmp_path: Path, name: str, **settings) -> Path:
    import memwall

    path = tmp_path / f"{name}.h5"
    memwall.simulate("gpt2", name, trace=path, **{"prompt_len": 16, "gen_len": 8, **settings})
    return path


@pytest.mark.parametrize("hier, settings", [
    ("hbm_accel", {}),  # fused, prefetch depth 1 (the runtime's)
    ("hbm_accel", {"fusion": "none", "prefetch_depth": 4}),
    ("hbm_accel_big_l2", {"prefetch_depth": 2}),
    ("hbm_accel", {"weight_dtype": "fp8", "act_dtype": "fp8", "kv_dtype": "fp8"}),
])
def test_no_roofline_point_lies_above_its_roof(tmp_path, hier, settings):
    """With prefetch, an op's bytes moved partly during the op before it: its time runs from
    when they were requested, so on every level bytes / time <= the level's rate, and FLOPs /
    time <= the compute roof of its kind at the run's precision."""
    from sim import read_trace
    from sim.plot import compute_roofs, roofline_points, stream_rates
    from sim.trace_reader import op_totals

    t = read_trace(_trace(tmp_path, hier, **settings), records=False)
    pts = roofline_points(t)
    assert len(pts) >= 6
    roofs = compute_roofs(t)
    dtype = settings.get("weight_dtype", "bf16")
    assert roofs["matmul"] == (f"{dtype} matmul", t.hierarchy.compute.peak_flops_per_s[dtype]
                               * t.runtime.matmul_efficiency)
    bw, tot = stream_rates(t), op_totals(t)
    for p in pts:
        assert p["achieved"] <= p["roof"] * (1 + 1e-9), p
        mine = t.ops["op_type"] == p["op_type"]
        nbytes = tot["bytes"][mine].sum(axis=0)
        time_s = (tot["elapsed_s"] + tot["prefetch_s"])[mine].sum()
        assert time_s == pytest.approx(p["time_s"])
        assert (nbytes / time_s <= bw * (1 + 1e-9)).all(), p
        rate = roofs["matmul" if p["kind"] == "matmul" else "vector"][1]
        assert p["flops"] / time_s <= rate * (1 + 1e-9), p
    if settings.get("prefetch_depth", 1) and "weight_dtype" not in settings:
        # charged to the op that consumed them, the prefetched bytes outran HBM in its time
        elapsed = [tot["bytes"][t.ops["op_type"] == p["op_type"]].sum(axis=0)
                   / tot["elapsed_s"][t.ops["op_type"] == p["op_type"]].sum() for p in pts]
        assert max(float((e / bw).max()) for e in elapsed) > 1


def test_the_timeline_draws_each_slice_as_wide_as_its_time(traced):
    """No edges (a 0.6 pt edge made 0.4% of compute look a third busy); each row's label
    gives its share of the window, the records' own sum."""
    from sim import read_trace, trace_figure

    fig = trace_figure(str(traced), "timeline", (1, 3))
    ax = fig.axes[0]
    bars = [c for c in ax.collections if c.get_paths()]
    assert bars and all((c.get_linewidths() == 0).all() for c in bars)
    t = read_trace(traced, tokens=(1, 3))
    r = t.records
    window = r["end_s"][-1] - r["start_s"][0]
    labels = {x.get_text().rsplit(" ", 1)[0]: x.get_text().rsplit(" ", 1)[1]
              for x in ax.get_yticklabels()}
    assert labels["compute"] == f"{100 * r['compute_s'].sum() / window:.1f}%"
    hbm = t.level_names.index("hbm")
    assert labels["stall hbm"] == f"{100 * r['stall_s'][:, hbm].sum() / window:.1f}%"
