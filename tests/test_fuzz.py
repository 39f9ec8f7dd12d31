"""Fuzzing our own inputs: hypothesis mutations of valid hierarchy, runtime, sweep and
config.json files and of a trace, each parsed only (no simulation), asserting the one-line-error
contract: a MemwallError whose message is one line naming the file, or acceptance (and an
accepted trace reads back exactly as the original). 240 generated cases in all, parse-only."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memwall.sweep_file import parse_sweep
from sim import MemwallError, inspect_trace, parse_hierarchy, read_trace
from sim.runtime_file import parse_runtime
from workloads import parse_hf_config

ROOT = Path(__file__).resolve().parent.parent
HIER = (ROOT / "hierarchies" / "hbm_accel.yaml").read_text()
RUNTIME = (ROOT / "runtimes" / "eager.yaml").read_text()
SWEEP = (ROOT / "sweeps" / "l2_vs_bandwidth.yaml").read_text()
CONFIG = (ROOT / "tests" / "hf_configs" / "Mistral-7B-v0.1.json").read_text()

# pieces a mutation splices in: YAML and JSON syntax, units, numbers at and past the limits
PIECES = st.sampled_from([
    "", " ", ":", "- ", "[", "]", "{", "}", "\"", "'", "&a", "*a", "!!python/object:os.system",
    "~", "null", "true", "-1", "0", "1e400", "nan", ".inf", "9" * 5000, "50 MiB", "3 TB/s",
    "80 ns", "1.8 GHz", "\t", "\n", "\x00", "\ufeff", "é", "#", "%YAML 1.1", "---", "<<: *a",
    "{a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
])


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` with one to three edits: a line deleted, duplicated, cut, or a piece spliced
    into it at a random column."""
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "cut", "splice", "replace"]))
        line = lines[i]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "cut":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        else:
            j = draw(st.integers(0, len(line)))
            end = len(line) if op == "replace" else j
            lines[i] = line[:j] + draw(PIECES) + line[end:]
        if not lines:
            lines = [""]
    return "".join(lines)


def one_line_naming(err: MemwallError, name: str) -> None:
    msg = str(err)
    assert msg and "\n" not in msg and "\r" not in msg, msg
    assert name in msg or msg.startswith("--"), msg


FAST = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FAST
@given(mutated(HIER))
def test_mutated_hierarchy_is_refused_in_one_line_or_accepted(text: str) -> None:
    try:
        parse_hierarchy(text, "fuzz_hier.yaml")
    except MemwallError as err:
        one_line_naming(err, "fuzz_hier.yaml")


@FAST
@given(mutated(RUNTIME))
def test_mutated_runtime_is_refused_in_one_line_or_accepted(text: str) -> None:
    try:
        parse_runtime(text, "fuzz_runtime.yaml")
    except MemwallError as err:
        one_line_naming(err, "fuzz_runtime.yaml")


@FAST
@given(mutated(SWEEP))
def test_mutated_sweep_is_refused_in_one_line_or_accepted(text: str) -> None:
    try:
        parse_sweep(text, "fuzz_sweep.yaml")
    except MemwallError as err:
        one_line_naming(err, "fuzz_sweep.yaml")


@FAST
@given(mutated(CONFIG))
def test_mutated_config_json_is_refused_in_one_line_or_accepted(text: str) -> None:
    try:
        parse_hf_config(text, "fuzz_config.json", "fuzz")
    except MemwallError as err:
        one_line_naming(err, "fuzz_config.json")


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict]:
    import memwall

    path = tmp_path_factory.mktemp("fuzz") / "t.h5"
    memwall.simulate("gpt2", "hbm_accel", prompt_len=2, gen_len=2, engine="analytic",
                     trace=path)
    return path.read_bytes(), inspect_trace(str(path))


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1,
                max_size=3))
def test_a_trace_with_flipped_bits_is_refused_in_one_line_or_reads_back_the_same(
        small_trace, tmp_path_factory, flips) -> None:
    data, clean = small_trace
    damaged = bytearray(data)
    for where, bit in flips:
        damaged[int(where * len(data))] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "t.h5"
    path.write_bytes(bytes(damaged))
    try:
        got = inspect_trace(str(path))
        read_trace(path)
    except MemwallError as err:
        one_line_naming(err, str(path))
        return
    with h5py.File(path) as f:  # accepted: the same answer as the undamaged trace
        assert f.attrs["sha256"]
    assert json.dumps({**got, "file": None}, sort_keys=True, default=str) == json.dumps(
        {**clean, "file": None}, sort_keys=True, default=str)
