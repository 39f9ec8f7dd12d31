"""memwall/paper.py: the Fig. 1 growth fit, the Fig. 3 counts and plot, the projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memwall import cli, paper
from memwall.inputs import as_hierarchy
from sim.outfile import write_figure


def _is_png(path: Path) -> bool:
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return path.read_bytes()[:4] == b"\x89PNG" and img.shape[1] > 300 and img.std() > 0.01


def test_fit_recovers_a_known_rate() -> None:
    years = np.arange(2000.0, 2021.0)
    rate, _ = paper.growth_per_two_years(years, 5.0 * 2.5 ** ((years - 2000) / 2))
    assert rate == pytest.approx(2.5, rel=1e-9)
    noisy = 5.0 * 1.6 ** ((years - 2000) / 2) * np.exp(np.random.default_rng(0).normal(0, 0.1,
                                                                                     years.size))
    assert paper.growth_per_two_years(years, noisy)[0] == pytest.approx(1.6, rel=0.05)


def test_fit_on_the_paper_data_lands_near_its_rates(tmp_path: Path) -> None:
    rows = paper.load_fig1()
    fits = paper.fig1_fits(rows)
    for group, paper_rate in paper.PAPER_RATES.items():
        assert fits[group]["rate_per_2y"] == pytest.approx(paper_rate, rel=0.05), group
    write_figure(paper.plot_fig1(rows, fits), tmp_path / "fig1.png")
    assert _is_png(tmp_path / "fig1.png")
    assert paper.fig1() == fits  # the bundled data by default


def test_fig3_model_extends_positions_only_when_needed() -> None:
    assert paper.fig3_model("gpt2", 4096).max_positions == 4096
    assert paper.fig3_model("gpt2", 128).max_positions == 1024
    assert paper.fig3_model("bert-base", 1024).max_positions == 1024


def test_fig3_shape_of_the_result(tmp_path: Path) -> None:
    rows = paper.fig3(lengths=(128,), engine="analytic")
    by = {r["model"]: r for r in rows}
    assert by["bert-base"]["latency_normalized"] == 1.0
    assert 0.5 < by["gpt2"]["flops"] / by["bert-base"]["flops"] < 2  # about equal FLOPs
    assert by["gpt2"]["mops_bytes"] > 10 * by["bert-base"]["mops_bytes"]
    assert by["gpt2"]["arithmetic_intensity"] < by["bert-base"]["arithmetic_intensity"] / 10
    assert by["gpt2"]["latency_s"] > by["bert-large"]["latency_s"]  # GPT-2 slowest
    write_figure(paper.plot_fig3(rows), tmp_path / "fig3.png")
    assert _is_png(tmp_path / "fig3.png")


def test_scaled_hierarchy_follows_the_trends() -> None:
    base = as_hierarchy("hbm_accel.yaml")
    h = paper.scaled(base, 4)
    c, c0 = h.compute.peak_flops_per_s, base.compute.peak_flops_per_s
    assert c["bf16"] == pytest.approx(9 * c0["bf16"], rel=1e-5)  # 3.0x per 2 years
    for level, factor in (("hbm", 1.6**2), ("l2", 9)):  # DRAM class 1.6x; on chip as compute
        bw = h.level(level).bandwidth_bytes_per_s
        assert bw == pytest.approx(factor * base.level(level).bandwidth_bytes_per_s, rel=1e-5)
    assert h.interconnect is not None and base.interconnect is not None
    assert h.interconnect.link_bandwidth_bytes_per_s == pytest.approx(
        1.4**2 * base.interconnect.link_bandwidth_bytes_per_s, rel=1e-5)


def test_projection_rows_and_plot(tmp_path: Path) -> None:
    rows = paper.projection("hbm_accel.yaml", "gpt2", 4, engine="analytic", prompt_len=16,
                            gen_len=4)
    assert [r["year"] for r in rows] == [0, 2, 4]
    assert rows[-1]["decode_s_per_token"] <= rows[0]["decode_s_per_token"]
    assert rows[-1]["compute_utilization"] <= rows[0]["compute_utilization"]
    write_figure(paper.plot_projection(rows, "t"), tmp_path / "proj.png")
    paper.write_csv(rows, tmp_path / "proj.csv")
    assert _is_png(tmp_path / "proj.png") and (tmp_path / "proj.csv").read_text().count("\n") == 4


def test_projection_past_the_files_typo_limits(tmp_path):
    """20 years at 3.0x per 2 years is 59,049x the compute peak: 117 EFLOP/s of fp8, past
    the 10 EFLOP/s a hierarchy file accepts; the projection still runs."""
    rows = paper.projection("hbm_accel.yaml", "gpt2", 20, engine="analytic", prompt_len=4,
                            gen_len=2)
    assert [r["year"] for r in rows] == list(range(0, 21, 2))
    h = paper.scaled(as_hierarchy("hbm_accel"), 20)
    assert h.compute.peak_flops_per_s["fp8"] == pytest.approx(1979e12 * 3.0**10, rel=1e-12)


def test_projection_refuses_negative_years(capsys, tmp_path):
    assert cli.main(["paper", "projection", "--hier", "hbm_accel.yaml", "--workload", "gpt2",
                     "--years", "-2", "--out", str(tmp_path)]) == 2
    assert "--years -2" in capsys.readouterr().err
