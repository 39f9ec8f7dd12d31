"""The Python API: memwall.hierarchy, Hierarchy.override, memwall.simulate and RunResult, the
one set of run defaults, provenance, and sweep/validate/paper callable from Python."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import memwall
from memwall import bundled, cli
from memwall.inputs import DEFAULTS, ENGINES, request
from memwall.result import RunResult, summary_keys
from sim import MemwallError, read_trace

SHORT = {"prompt_len": 16, "gen_len": 4}
HBM_ACCEL = bundled.folder("hierarchies") / "hbm_accel.yaml"


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert cli.main([*argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def test_hierarchy_from_a_name_a_path_yaml_text_and_a_mapping_are_the_same_device():
    by_name = memwall.hierarchy("hbm_accel")
    text = HBM_ACCEL.read_text()
    assert memwall.hierarchy("hbm_accel.yaml") == by_name
    assert memwall.hierarchy(HBM_ACCEL) == by_name
    from_text = memwall.hierarchy(text)
    from_dict = memwall.hierarchy(yaml.safe_load(text))
    for h in (from_text, from_dict):  # the same device; only where it came from differs
        assert (h.compute, h.levels, h.placement, h.interconnect) == (
            by_name.compute, by_name.levels, by_name.placement, by_name.interconnect)
    assert by_name.sha256 == hashlib.sha256(HBM_ACCEL.read_bytes()).hexdigest()
    assert from_text.sha256 == hashlib.sha256(text.encode()).hexdigest() and not from_text.path


def test_override_has_the_checks_and_messages_of_set(capsys):
    hw = memwall.hierarchy("hbm_accel")
    big = hw.override({"memory.l2.capacity": "512 MiB", "memory.hbm.efficiency": 0.8})
    assert big.level("l2").capacity_bytes == 512 * 2**20 and big.level("hbm").efficiency == 0.8
    assert big.overrides == ("memory.l2.capacity=512 MiB", "memory.hbm.efficiency=0.8")
    assert hw.level("l2").capacity_bytes == 50 * 2**20  # frozen: the original is unchanged
    stacked = big.override(["compute.vector=10 TFLOP/s"])
    assert stacked.overrides[-1] == "compute.vector=10 TFLOP/s"
    assert stacked.compute.vector_flops_per_s == 10e12
    with pytest.raises(MemwallError) as api:
        hw.override({"memory.l2.capacity": "3 GHz"})
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml",
                     "--set", "memory.l2.capacity=3 GHz"]) == 2
    err = capsys.readouterr().err.strip()
    tail = 'memory.l2.capacity: "3 GHz" is a frequency; expected a size such as "50 MiB"'
    assert str(api.value) == f"override memory.l2.capacity=3 GHz: {tail}"
    assert err == f"memwall: error: --set memory.l2.capacity=3 GHz: {tail}"
    with pytest.raises(MemwallError, match='no entry named "l9"'):
        hw.override({"memory.l9.capacity": "1 MiB"})


def test_simulate_returns_a_frozen_typed_result_equal_to_the_cli_json(capsys):
    r = memwall.simulate("gpt2", "hbm_accel", **SHORT)
    assert isinstance(r, RunResult) and r.workload == "gpt2" and r.hierarchy == "hbm_accel"
    assert r.bound_by == "hbm" and r.stall_s["hbm"] > 0 and r.decode_s_per_token > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.total_s = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.stall_s["hbm"] = 0.0  # type: ignore[index]
    got = r.to_dict()
    want = cli_json(capsys, "--workload", "gpt2", "--hier", "hbm_accel", "--prompt-len", "16",
                    "--gen-len", "4")
    assert list(got) == list(want) == list(summary_keys())
    assert got["provenance"].pop("command_line") is None  # from Python
    assert want["provenance"].pop("command_line")[:3] == ["memwall", "--workload", "gpt2"]
    assert got == want
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel", "--prompt-len", "16",
                     "--gen-len", "4"]) == 0
    assert capsys.readouterr().out == r.report() + "\n"


def test_unknown_engine_names_are_refused_with_the_list():
    assert ENGINES == tuple(cli.ENGINE_CHOICES) == tuple(memwall.simulation.ENGINES)
    for bad in ("DES", "Analytic", "roofline"):
        with pytest.raises(MemwallError, match=rf"engine = '{bad}': expected one of des, "
                                               "analytic"):
            memwall.simulate("gpt2", "hbm_accel", engine=bad, **SHORT)


@pytest.mark.parametrize("settings, message", [
    ({"fusion": "all"}, "fusion = 'all': expected one of none, fused"),
    ({"weight_dtype": "int3"}, "weight_dtype = 'int3': expected one of fp32"),
    ({"prefetch_depth": -1}, "prefetch_depth = -1: expected an integer from 0 to 1024"),
    ({"overlap": "yes"}, "overlap = 'yes': expected true or false"),
    ({"batch": 0}, "batch = 0: expected an int >= 1"),
])
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(MemwallError) as e:
        memwall.simulate("gpt2", "hbm_accel", **settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_one_set_of_defaults_everywhere():
    assert DEFAULTS["prompt_len"] == 128 and DEFAULTS["gen_len"] is None
    r = request("gpt2", "hbm_accel")
    assert (r.spec.prompt_len, r.spec.gen_len, r.spec.batch, r.engine) == (128, 128, 1, "des")
    assert request("bert-base", "hbm_accel").spec.gen_len == 0  # an encoder generates nothing
    assert (r.fusion, r.prefetch_depth) == ("fused", 1)  # the file's
    args = cli.build_parser().parse_args(["--workload", "gpt2", "--hier", "x"])
    assert cli._settings(args) == {k: DEFAULTS[k] for k in cli._settings(args)}
    from memwall.sweep_file import WorkloadEntry

    entry = WorkloadEntry("gpt2")
    assert entry.settings() == {k: DEFAULTS[k] for k in entry.settings()}


def test_records_are_per_op_columns_that_add_up_to_the_summary():
    r = memwall.simulate("gpt2", "hbm_accel", records=True, **SHORT)
    rec = r.records
    assert rec is not None and len(rec["step"]) == r.n_ops
    assert set(np.unique(rec["step"]).tolist()) == set(range(4))
    assert rec["compute_s"].sum() == pytest.approx(r.compute_s, rel=1e-12)
    for level, nbytes in r.bytes_by_level.items():
        assert int(rec[f"bytes.{level}"].sum()) == nbytes
        assert rec[f"stall_s.{level}"].sum() == pytest.approx(r.stall_s[level], rel=1e-9,
                                                              abs=1e-15)
    assert memwall.simulate("gpt2", "hbm_accel", **SHORT).records is None  # not by default


def test_provenance_names_the_file_its_checksum_and_the_overrides(tmp_path):
    r = memwall.simulate("gpt2", "hbm_accel", overrides={"memory.l2.capacity": "64 MiB"},
                         trace=tmp_path / "t.h5", **SHORT)
    p = r.provenance
    assert p["memwall_version"] == memwall.__version__
    assert p["hierarchy"] == "hbm_accel" and Path(p["hierarchy_path"]) == HBM_ACCEL.resolve()
    assert p["hierarchy_sha256"] == hashlib.sha256(HBM_ACCEL.read_bytes()).hexdigest()
    assert p["overrides"] == ("memory.l2.capacity=64 MiB",) and p["fusion"] == "fused"
    t = read_trace(tmp_path / "t.h5", records=False)
    assert t.summary["provenance"] == r.to_dict()["provenance"]
    import h5py

    with h5py.File(tmp_path / "t.h5") as f:
        assert json.loads(f.attrs["provenance"])["hierarchy_sha256"] == p["hierarchy_sha256"]


def test_a_config_json_workload_records_its_checksum(tmp_path):
    cfg = tmp_path / "tiny" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2,
                               "vocab_size": 100, "n_positions": 64}))
    r = memwall.simulate(cfg, "hbm_accel", prompt_len=4, gen_len=2)
    assert r.workload == "tiny" and r.provenance["workload_path"] == str(cfg.resolve())
    assert r.provenance["workload_sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()


def test_sweep_validate_and_paper_return_data(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("base: hbm_accel.yaml\nengine: analytic\nworkloads:\n"
                          "  - {workload: gpt2, prompt_len: 4, gen_len: 2}\n"
                          'grid:\n  memory.l2.capacity: ["50 MiB", "256 MiB"]\n')
    res = memwall.sweep(sweep_file, tmp_path / "out", workers=1, progress=False)
    assert len(res.rows) == 2 and res.missing == 0 and res.failed == 0
    assert all(r["provenance.hierarchy"] == "hbm_accel" for r in res.rows)
    assert [json.loads(r["provenance.overrides"]) for r in res.rows] == [
        ["memory.l2.capacity=50 MiB"], ["memory.l2.capacity=256 MiB"]]
    points = [p for p in memwall.validation.load_points() if p.id.endswith("fp8-h100-ttft")]
    v = memwall.validate(points, engine="analytic")
    assert len(v["points"]) == 1 and v["mape_in_sample"]["overall"] == pytest.approx(
        100 * abs(v["points"][0]["error"]))
    fits = memwall.paper.fig1()
    assert set(fits) == {"flops", "dram_bw", "interconnect_bw"}


def test_a_hierarchy_read_back_from_a_trace_cannot_be_overridden(tmp_path):
    memwall.simulate("gpt2", "hbm_accel", trace=tmp_path / "t.h5", **SHORT)
    h = read_trace(tmp_path / "t.h5", records=False).hierarchy
    with pytest.raises(MemwallError, match="rebuilt from a trace"):
        h.override({"memory.l2.capacity": "1 GiB"})
