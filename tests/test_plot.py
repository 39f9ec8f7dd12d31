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
