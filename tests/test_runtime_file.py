"""Runtime files: read and refused like hierarchy files, device entries, overrides from the
command line and from Python, and what a run records of its runtime."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

import memwall
from memwall import bundled, cli
from memwall.inputs import as_hierarchy, as_runtime
from sim.runtime import COLLECTIVES
from sim.runtime_file import RuntimeFileError, parse_runtime, runtime_from_dict, runtime_to_dict

BASE = """\
schema_version: 1
description: a test stack
kernels:
  launch: 4 us
  step: 20 us
fusion:
  epilogues: true
  attention: false
efficiency:
  matmul: 0.75
  memory: 0.9
  vector: 0.5
collective:
  algorithm: auto
  latency: 5 us
prefetch_depth: 1
devices:
  mi300x:
    efficiency: {matmul: 0.5}
    kernels: {launch: 6 us}
"""


def test_the_base_text_in_si_units() -> None:
    r = parse_runtime(BASE, "rt")
    assert (r.launch_s, r.step_s) == pytest.approx((4e-6, 20e-6))
    assert (r.fuse_epilogues, r.fuse_attention, r.fusion) == (True, False, "epilogues")
    assert (r.matmul_efficiency, r.memory_efficiency, r.vector_efficiency) == (0.75, 0.9, 0.5)
    assert (r.collective, r.prefetch_depth) == ("auto", 1)
    assert r.collective_latency_s == pytest.approx(5e-6)
    assert r.sha256 == hashlib.sha256(BASE.encode()).hexdigest()
    back = runtime_from_dict(json.loads(json.dumps(runtime_to_dict(r))))
    assert back == dataclasses.replace(r, devices={})  # device entries are applied, not kept


def test_a_device_entry_applies_only_on_that_device() -> None:
    r = parse_runtime(BASE, "rt")
    on = r.on("mi300x")
    assert (on.matmul_efficiency, on.launch_s) == (0.5, 6e-6)
    assert r.on("h100_sxm") == r and r.matmul_efficiency == 0.75


@pytest.mark.parametrize("old, new, line, key, fragment", [
    ("  launch: 4 us", "  lanch: 4 us", 4, "kernels.lanch", 'did you mean "launch"'),
    ("  launch: 4 us\n", "", 4, "kernels.launch", "missing required key"),
    ("  launch: 4 us", "  launch: 4", 4, "kernels.launch", '"4" has no unit'),
    ("  launch: 4 us", "  launch: 4 GB", 4, "kernels.launch", '"4 GB" is a size'),
    ("  launch: 4 us", "  launch: -4 us", 4, "kernels.launch", "negative"),
    ("  matmul: 0.75", "  matmul: 1.5", 10, "efficiency.matmul", "not a fraction"),
    ("  matmul: 0.75", "  matmul:", 10, "efficiency.matmul", "empty"),
    ("  algorithm: auto", "  algorithm: tre", 14, "collective.algorithm", 'did you mean "tree"'),
    ("  epilogues: true", "  epilogues: 1", 7, "fusion.epilogues", "true or false"),
    ("prefetch_depth: 1", "prefetch_depth: -1", 16, "prefetch_depth", "out of range"),
    ("schema_version: 1", "schema_version: 7", 1, "schema_version", "the schema version, 1"),
    ("    kernels: {launch: 6 us}", "    kernels: {launch: 6 parsecs}", 20, "kernels.launch",
     'unknown unit "parsecs"'),
])
def test_bad_runtime_files_are_one_line(old: str, new: str, line: int, key: str,
                                        fragment: str) -> None:
    assert old in BASE
    with pytest.raises(RuntimeFileError) as e:
        r = parse_runtime(BASE.replace(old, new, 1), "rt")
        r.on("mi300x")  # device entries are checked when they apply
    msg = str(e.value)
    assert "\n" not in msg and fragment in msg, msg
    assert msg.startswith(f"rt:{line}: {key}:") or msg.startswith("rt: devices.mi300x: ") \
        and key in msg, msg


def test_every_bundled_runtime_loads_and_every_hierarchy_names_one() -> None:
    names = {p.stem for p in bundled.runtime_files()}
    assert {"tensorrt-llm", "vllm", "ggml", "compiled", "dataflow"} <= names
    for path in bundled.runtime_files():
        r = as_runtime(path.stem)
        assert r.collective in COLLECTIVES and 0 < r.matmul_efficiency <= 1
    for path in bundled.hierarchy_files():
        h = as_hierarchy(path.stem)
        assert h.runtime in names, path.name
        for device in as_runtime(h.runtime).devices:  # entries for devices that exist
            assert (bundled.folder("hierarchies") / f"{device}.yaml").is_file(), device


def test_the_runtime_flag_set_paths_and_the_json(capsys) -> None:
    argv = ["--workload", "gpt2", "--hier", "a100_80gb", "--prompt-len", "8", "--gen-len", "4",
            "--json", "-"]
    assert cli.main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["runtime"] == "tensorrt-llm"
    assert cli.main([*argv, "--runtime", "compiled", "--set", "runtime.kernels.launch=2 us",
                     "--set", "memory.l2.capacity=80 MiB"]) == 0
    s = json.loads(capsys.readouterr().out)
    p = s["provenance"]
    assert (s["runtime"], s["fusion"]) == ("compiled", "fused")
    assert p["runtime_overrides"] == ["kernels.launch=2 us"]
    assert p["overrides"] == ["memory.l2.capacity=80 MiB"]
    path = bundled.folder("runtimes") / "compiled.yaml"
    assert p["runtime_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s["stall_s"]["dispatch"] == pytest.approx(s["n_ops"] * 2e-6)
    assert cli.main([*argv, "--set", "runtime.kernels.launch=2 zz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memwall: error: --set runtime.kernels.launch=2 zz: kernels.launch:")


def test_step_overhead_is_paid_once_per_step() -> None:
    base = memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=4)
    slow = memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=4,
                            overrides={"runtime.kernels.step": "100 us"})
    steps = 4  # the prefill and three decode steps
    assert slow.stall_s["dispatch"] - base.stall_s["dispatch"] == pytest.approx(steps * 1e-4)
    assert slow.total_s - base.total_s == pytest.approx(steps * 1e-4, rel=1e-6)


def test_memory_efficiency_slows_streaming_and_the_bound_with_it() -> None:
    base = memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=4, engine="analytic")
    half = memwall.simulate("gpt2", "hbm_accel", prompt_len=8, gen_len=4, engine="analytic",
                            overrides={"runtime.efficiency.memory": 0.5})
    assert half.busy_s["hbm"] == pytest.approx(2 * base.busy_s["hbm"], rel=1e-12)
    assert half.decode_s_per_token > 1.5 * base.decode_s_per_token


def test_a_schema_1_hierarchy_is_refused_with_where_its_figures_went(tmp_path) -> None:
    old = (bundled.folder("hierarchies") / "hbm_accel.yaml").read_text()
    old = old.replace("schema_version: 2", "schema_version: 1").replace(
        "  vector: 66.9 TFLOP/s", "  vector: 66.9 TFLOP/s\n  dispatch: 4 us")
    with pytest.raises(memwall.MemwallError) as e:
        memwall.hierarchy(old)
    msg = str(e.value)
    assert msg.startswith("hierarchy:2: schema_version: 1 is the old schema") and "dispatch" in msg
    assert "runtimes/README.md" in msg and "\n" not in msg
