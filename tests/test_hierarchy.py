from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import MemwallError
from sim.hierarchy import Hierarchy
from sim.hierarchy_file import (
    HierarchyError,
    HierarchyWarning,
    apply_overrides,
    hierarchy_to_dict,
    load_hierarchy,
)
from sim.units import UNITS

# every bundled file, found on disk (a file added is tested without editing a list)
BUNDLED = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "hierarchies")
                 .glob("*.yaml"))
DOCUMENTED = {"hbm_accel", "a100_80gb", "h100_sxm", "h200", "b200", "mi300x", "xeon_gold_6242",
              "xeon_platinum_8480", "hbm_accel_big_l2", "hbm_accel_tiered", "sram_only"}
GPT2_BF16_BYTES = 124_439_808 * 2
LLAMA2_70B_BF16_BYTES = 68_976_648_192 * 2

# line numbers below refer to this text
BASE = """\
schema_version: 2
runtime: toy
compute:
  clock: 1.5 GHz
  peak:
    bf16: 100 TFLOP/s
    int8: 200 TOP/s
  vector: 10 TFLOP/s
memory:
  - name: l1
    capacity: 1 MiB
    bandwidth: 10 TB/s
    latency: 30 cycles
  - name: l2
    capacity: 40 MiB
    bandwidth: 5 TB/s
    latency: 200 cycles
    policy: lru
  - name: hbm
    capacity: 80 GB
    bandwidth: 2 TB/s
    latency: 500 ns
placement:
  weights: [hbm]
  kv_cache: [hbm]
  activations: [l2, hbm]
"""
INTERCONNECT = """\
interconnect:
  link_bandwidth: 450 GB/s
  latency: 8 us
  topology: switch
  max_devices: 8
"""


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> Hierarchy:
    return load_hierarchy(write(tmp_path, text), overrides=overrides)


# --- bundled files -------------------------------------------------------------------------


def test_every_documented_hierarchy_is_bundled():
    assert DOCUMENTED <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_loads_cleanly(name: str, hierarchies_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", HierarchyWarning)
        h = load_hierarchy(f"{name}.yaml", [hierarchies_dir])
    assert h.name == name
    assert h.schema_version == 2
    assert h.description
    assert h.path.endswith(f"{name}.yaml")
    assert set(h.compute.peak_flops_per_s) <= {"fp32", "bf16", "fp16", "fp8", "int8", "int4"}
    names = [lv.name for lv in h.levels]
    for tensors in (h.placement.weights, h.placement.kv_cache, h.placement.activations):
        assert set(tensors) <= set(names)
    json.dumps(hierarchy_to_dict(h))


def test_bare_name_without_suffix_and_path(hierarchies_dir: Path) -> None:
    by_name = load_hierarchy("hbm_accel", [hierarchies_dir])
    by_path = load_hierarchy(hierarchies_dir / "hbm_accel.yaml")
    assert by_name == by_path


def test_hbm_accel_levels_are_the_names_sweeps_use(hierarchies_dir: Path) -> None:
    h = load_hierarchy("hbm_accel.yaml", [hierarchies_dir])
    assert [lv.name for lv in h.levels] == ["registers", "l1", "l2", "hbm"]
    assert h.level("l2").policy == "lru"
    assert h.level("hbm").bandwidth_bytes_per_s == 3.35e12
    assert h.compute.peak_flops_per_s["bf16"] == pytest.approx(989.4e12)


def test_xeon_is_the_papers_cpu(hierarchies_dir: Path) -> None:
    h = load_hierarchy("xeon_gold_6242", [hierarchies_dir])
    assert [lv.name for lv in h.levels] == ["registers", "l1", "l2", "l3", "dram"]
    assert h.level("dram").bandwidth_bytes_per_s == pytest.approx(6 * 2933e6 * 8, rel=1e-3)
    assert "bf16" not in h.compute.peak_flops_per_s and "fp8" not in h.compute.peak_flops_per_s
    assert h.compute.peak_flops_per_s["int8"] > h.compute.peak_flops_per_s["fp32"]


def test_what_if_designs_hold_their_models(hierarchies_dir: Path) -> None:
    base = load_hierarchy("hbm_accel", [hierarchies_dir])
    big = load_hierarchy("hbm_accel_big_l2", [hierarchies_dir])
    assert big.level("l2").capacity_bytes >= max(GPT2_BF16_BYTES, 512 * 2**20)
    assert big.levels[-1] == base.levels[-1]
    tiered = load_hierarchy("hbm_accel_tiered", [hierarchies_dir])
    assert [lv.name for lv in tiered.levels][-2:] == ["hbm", "lpddr"]
    assert tiered.level("lpddr").bandwidth_bytes_per_s < tiered.level("hbm").bandwidth_bytes_per_s
    fill = tiered.placement.weights
    assert fill == ("hbm", "lpddr") and tiered.placement.kv_cache == ("hbm", "lpddr")
    assert sum(tiered.level(n).capacity_bytes for n in fill) >= LLAMA2_70B_BF16_BYTES
    sram = load_hierarchy("sram_only", [hierarchies_dir])
    home = sram.level(sram.placement.weights[0])
    assert home.capacity_bytes >= GPT2_BF16_BYTES
    assert home.bandwidth_bytes_per_s == 21e15


def test_nvlink_is_per_direction(hierarchies_dir: Path) -> None:
    a100 = load_hierarchy("a100_80gb", [hierarchies_dir]).interconnect
    h100 = load_hierarchy("h100_sxm", [hierarchies_dir]).interconnect
    assert a100 is not None and a100.link_bandwidth_bytes_per_s == 300e9
    assert h100 is not None and h100.link_bandwidth_bytes_per_s == 450e9


def test_not_found_names_the_search(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match="not found"):
        load_hierarchy("no_such_accel.yaml", [tmp_path])


# --- the base text and its SI values -------------------------------------------------------


def test_base_loads_in_si_units(tmp_path: Path) -> None:
    h = load_text(tmp_path, BASE + INTERCONNECT)
    assert h.name == "bad"
    assert h.compute.clock_hz == 1.5e9
    assert h.runtime == "toy" and h.compute.units == 1
    assert h.level("l1").latency_s == pytest.approx(20e-9)
    assert h.level("l2").capacity_bytes == 40 * 2**20
    assert h.placement.activations == ("l2", "hbm")
    assert h.interconnect is not None and h.interconnect.topology == "switch"
    d = hierarchy_to_dict(h)
    assert "document" not in d
    assert d["levels"][2]["bandwidth_bytes_per_s"] == 2e12
    assert json.loads(json.dumps(d)) == d


# --- bad input: one line naming file:line, the key path and what was expected ---------------

BAD = [
    # (description, old, new, line, key path, fragment)
    ("unknown key", "    bandwidth: 5 TB/s", "    bandwdth: 5 TB/s", 16,
     "memory.l2.bandwdth", 'did you mean "bandwidth"'),
    ("unknown top key", "placement:", "placment:", 23, "placment", 'did you mean "placement"'),
    ("missing key", "    latency: 200 cycles\n", "", 14, "memory.l2.latency", "missing"),
    ("missing section", "  vector: 10 TFLOP/s\n", "", 4, "compute.vector", "missing"),
    ("missing runtime", "runtime: toy\n", "", 1, "runtime", "missing"),
    ("wrong kind", "bandwidth: 5 TB/s", "bandwidth: 3 GHz", 16, "memory.l2.bandwidth",
     '"3 GHz" is a frequency; expected a bandwidth such as "5.5 TB/s"'),
    ("no unit", "capacity: 40 MiB", "capacity: 40", 15, "memory.l2.capacity", "no unit"),
    ("negative", "bandwidth: 5 TB/s", "bandwidth: -5 TB/s", 16, "memory.l2.bandwidth",
     "negative"),
    ("zero", "capacity: 40 MiB", "capacity: 0 MiB", 15, "memory.l2.capacity", "zero"),
    ("nan", "bandwidth: 5 TB/s", "bandwidth: nan TB/s", 16, "memory.l2.bandwidth",
     "not finite"),
    ("yaml nan", "bandwidth: 5 TB/s", "bandwidth: .nan", 16, "memory.l2.bandwidth", "no unit"),
    ("inf", "capacity: 80 GB", "capacity: inf GB", 20, "memory.hbm.capacity", "not finite"),
    ("absurd", "bandwidth: 5 TB/s", "bandwidth: 5e9 TB/s", 16, "memory.l2.bandwidth",
     "larger than"),
    ("absurd clock", "clock: 1.5 GHz", "clock: 1.5 Hz", 4, "compute.clock", "smaller than"),
    ("duplicate key", "    capacity: 40 MiB\n", "    capacity: 40 MiB\n    capacity: 50 MiB\n",
     16, "memory.l2.capacity", "duplicate key"),
    ("python tag", "  vector: 10 TFLOP/s", "  vector: !!python/object/apply:os.system [echo]", 8,
     "compute.vector", "not allowed"),
    ("custom tag", "  vector: 10 TFLOP/s", "  vector: !fast 10 TFLOP/s", 8, "compute.vector",
     "not allowed"),
    ("placement", "weights: [hbm]", "weights: [hbm, dram]", 24, "placement.weights",
     '"dram" is not a level'),
    ("placement twice", "weights: [hbm]", "weights: [hbm, hbm]", 24, "placement.weights",
     "twice"),
    ("duplicate level", "  - name: hbm", "  - name: l2", 19, "memory.l2.name",
     "duplicate level name"),
    ("bad policy", "policy: lru", "policy: lur", 18, "memory.l2.policy", 'did you mean "lru"'),
    ("bad precision", "    bf16: 100", "    bfloat16: 100", 6, "compute.peak.bfloat16",
     "unknown precision"),
    ("bad version", "schema_version: 2", "schema_version: 3", 1, "schema_version",
     "expected the schema version, 2"),
    ("old schema", "schema_version: 2", "schema_version: 1", 1, "schema_version",
     "1 is the old schema"),
    ("software key", "  vector: 10 TFLOP/s", "  vector: 10 TFLOP/s\n  dispatch: 3 us", 9,
     "compute.dispatch", "unknown key"),
    ("bad fraction", "    policy: lru", "    policy: lru\n    efficiency: 1.5", 19,
     "memory.l2.efficiency", "fraction"),
    ("bool units", "  vector: 10 TFLOP/s", "  vector: 10 TFLOP/s\n  units: yes", 9,
     "compute.units", "integer"),
    ("bad level name", "  - name: hbm", "  - name: h.bm", 19, "memory.h.bm.name", "level name"),
    ("policy as a list", "    latency: 30 cycles", "    latency: 30 cycles\n    policy: [lru]", 14,
     "memory.l1.policy", "expected one of none, lru, pin"),
]


@pytest.mark.parametrize(("old", "new", "line", "key", "fragment"),
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_file_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key: str, fragment: str
) -> None:
    assert old in BASE
    with pytest.raises(HierarchyError) as err:
        load_text(tmp_path, BASE.replace(old, new, 1))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line}: {key}:"), message
    assert fragment in message
    assert "\n" not in message


def test_bad_topology(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r"bad\.yaml:30: interconnect\.topology: .*ring"):
        load_text(tmp_path, BASE + INTERCONNECT.replace("switch", "mesh"))


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(HierarchyError, match=r"bad\.yaml:1: empty file"):
        load_text(tmp_path, text)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r"bad\.yaml:2\d: YAML syntax error"):
        load_text(tmp_path, BASE.replace("weights: [hbm]", "weights: [hbm"))


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r"bad\.yaml:1: .* is not a mapping"):
        load_text(tmp_path, "- a\n- b\n")


def test_aliases_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("  weights: [hbm]\n  kv_cache: [hbm]\n",
                        "  weights: &w [hbm]\n  kv_cache: *w\n")
    with pytest.raises(HierarchyError, match=r"bad\.yaml:25: placement\.kv_cache: .*alias"):
        load_text(tmp_path, text)


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "constructed"
    text = BASE.replace("  vector: 10 TFLOP/s",
                        f"  vector: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]")
    with pytest.raises(HierarchyError, match="not allowed"):
        load_text(tmp_path, text)
    assert not marker.exists()


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(BASE.encode() + b"description: \xff\n")
    with pytest.raises(HierarchyError, match=r"bad\.yaml:27: not UTF-8"):
        load_hierarchy(path)


# --- warnings for likely typos -------------------------------------------------------------


def test_inner_level_larger_warns(tmp_path: Path) -> None:
    with pytest.warns(HierarchyWarning, match=r"bad\.yaml:11: memory\.l1\.capacity: .*l2"):
        load_text(tmp_path, BASE.replace("capacity: 1 MiB", "capacity: 1 GiB"))


def test_inner_level_slower_warns(tmp_path: Path) -> None:
    with pytest.warns(HierarchyWarning, match=r"bad\.yaml:12: memory\.l1\.bandwidth: .*slower"):
        load_text(tmp_path, BASE.replace("bandwidth: 10 TB/s", "bandwidth: 10 GB/s"))


def test_inner_level_further_away_warns(tmp_path: Path) -> None:
    with pytest.warns(HierarchyWarning, match=r"memory\.l2\.latency: .*longer"):
        load_text(tmp_path, BASE.replace("latency: 200 cycles", "latency: 2000 cycles"))


# --- overrides -----------------------------------------------------------------------------


def test_override_round_trips(tmp_path: Path) -> None:
    base = load_text(tmp_path, BASE)
    h = apply_overrides(base, ["memory.l2.capacity=256 MiB", "compute.vector=20 TFLOP/s",
                               "placement.weights=[hbm, l2]", "compute.peak.fp8=400 TFLOP/s"])
    assert h.level("l2").capacity_bytes == 256 * 2**20
    assert h.compute.vector_flops_per_s == pytest.approx(20e12)
    assert h.placement.weights == ("hbm", "l2")
    assert h.compute.peak_flops_per_s["fp8"] == 400e12
    assert h.level("hbm") == base.level("hbm")
    assert base.level("l2").capacity_bytes == 40 * 2**20  # the original is untouched
    again = load_hierarchy(write(tmp_path, BASE),
                           overrides=["memory.l2.capacity=256 MiB", "compute.vector=20 TFLOP/s",
                                      "placement.weights=[hbm, l2]",
                                      "compute.peak.fp8=400 TFLOP/s"])
    assert again == h
    assert apply_overrides(h, ["memory.l2.capacity=40 MiB", "compute.vector=10 TFLOP/s",
                               "placement.weights=[hbm]"]).level("l2") == base.level("l2")


def test_overrides_accumulate_and_can_add_a_section(tmp_path: Path) -> None:
    h = apply_overrides(load_text(tmp_path, BASE), ["memory.hbm.efficiency=0.8"])
    h = apply_overrides(h, ["interconnect.link_bandwidth=300 GB/s", "interconnect.latency=5 us",
                            "interconnect.topology=ring", "interconnect.max_devices=4"])
    assert h.level("hbm").efficiency == 0.8
    assert h.interconnect is not None and h.interconnect.max_devices == 4


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("memory.l2.capacity=3 GHz", 'memory.l2.capacity: "3 GHz" is a frequency'),
        ("memory.l2.capacity=", "memory.l2.capacity: empty; expected a size"),
        ("memory.l3.capacity=1 GB", 'memory.l3: no entry named "l3"'),
        ("memory.l2.capacty=1 GB", 'memory.l2.capacty: unknown key; did you mean "capacity"'),
        ("compute.vector=4", 'compute.vector: "4" has no unit'),
        ("placement.weights=[hmb]", 'did you mean "hbm"'),
        ("compute.clock.hz=1", "compute.clock.hz: compute.clock is a single value"),
        ("compute", "expected PATH=VALUE"),
        ("memory..capacity=1 GB", "expected PATH=VALUE"),
        ("compute.vector=!!python/name:os.system", "not allowed"),
        ("compute.vector=[1 TFLOP/s", "YAML syntax error"),
        ("interconnect.topology=mesh", "interconnect.link_bandwidth: missing"),
    ],
)
def test_override_errors_name_the_set_path(tmp_path: Path, override: str, fragment: str) -> None:
    with pytest.raises(HierarchyError) as err:
        load_text(tmp_path, BASE, (override,))
    message = str(err.value)
    assert message.startswith(f"--set {override}: "), message
    assert fragment in message


def test_apply_overrides_needs_a_document(tmp_path: Path) -> None:
    h = load_text(tmp_path, BASE)
    bare = Hierarchy(name=h.name, compute=h.compute, levels=h.levels, placement=h.placement)
    with pytest.raises(HierarchyError, match="no source document"):
        apply_overrides(bare, ["memory.l2.capacity=1 MiB"])


# --- properties ----------------------------------------------------------------------------

FIELDS = [  # (path into the parsed BASE tree, kind)
    (("compute", "clock"), "frequency"),
    (("compute", "vector"), "rate"),
    (("memory", 1, "capacity"), "size"),
    (("memory", 1, "bandwidth"), "bandwidth"),
    (("memory", 1, "latency"), "time"),
]
LIMITS = {"size": (1, 2**50), "bandwidth": (1, 1e18), "time": (1e-12, 1),
          "frequency": (1e6, 1e11), "rate": (1e6, 1e19)}
_PROPERTY = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


def _with(path: tuple[Any, ...], value: Any) -> str:
    tree = yaml.safe_load(BASE)
    node = tree
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return yaml.safe_dump(tree, allow_unicode=True)


def _read_back(h: Hierarchy, path: tuple[Any, ...]) -> float:
    if path[0] == "compute":
        name = {"clock": "clock_hz", "vector": "vector_flops_per_s"}
        return float(getattr(h.compute, name[path[1]]))
    name = {"capacity": "capacity_bytes", "bandwidth": "bandwidth_bytes_per_s",
            "latency": "latency_s"}
    return float(getattr(h.levels[path[1]], name[path[2]]))


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[tuple[Any, ...], str, float]:
    path, kind = draw(st.sampled_from(FIELDS))
    unit = draw(st.sampled_from(sorted(UNITS[kind])))
    low, high = LIMITS[kind]
    factor = UNITS[kind][unit]
    x = draw(st.floats(min_value=max(low, 1e-12) / factor, max_value=high / factor / 2,
                       allow_nan=False, allow_infinity=False))
    return path, f"{x!r} {unit}", x * factor


@_PROPERTY
@given(well_formed())
def test_well_formed_values_load(tmp_path: Path, case: tuple[tuple[Any, ...], str, float]) -> None:
    path, text, si = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierarchyWarning)
        h = load_text(tmp_path, _with(path, text))
    got = _read_back(h, path)
    if path[-1] == "capacity":
        assert got == round(si)
    else:
        assert math.isclose(got, si, rel_tol=1e-9)


_WRONG_KIND = {k: [f"3 {u}" for kk, t in UNITS.items() if kk != k for u in list(t)[:3]]
               for k in UNITS}


@st.composite
def malformed(draw: st.DrawFn) -> tuple[tuple[Any, ...], Any]:
    path, kind = draw(st.sampled_from(FIELDS))
    unit = draw(st.sampled_from(sorted(UNITS[kind])))
    value = draw(st.one_of(
        st.floats(max_value=-1e-300).map(lambda x: f"{x!r} {unit}"),  # negative
        st.sampled_from([f"nan {unit}", f"inf {unit}", f"-inf {unit}"]
                        + ([] if kind == "time" else [f"0 {unit}"])),  # a zero time is allowed
        st.sampled_from(_WRONG_KIND[kind]),
        st.floats() | st.integers() | st.booleans() | st.none(),  # no unit
        st.text(alphabet=st.characters(categories=["L", "P", "Z"]), max_size=12),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ))
    return path, value


@_PROPERTY
@given(malformed())
def test_malformed_values_are_refused(tmp_path: Path, case: tuple[tuple[Any, ...], Any]) -> None:
    path, value = case
    with pytest.raises(HierarchyError):
        load_text(tmp_path, _with(path, value))


@_PROPERTY
@given(st.text(max_size=200) | st.sampled_from(BASE.splitlines(keepends=True)).map(
    lambda line: BASE.replace(line, "", 1)))
def test_any_text_loads_or_gives_a_hierarchy_error(tmp_path: Path, text: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HierarchyWarning)
            load_text(tmp_path, text)
    except HierarchyError as err:
        assert "\n" not in str(err)


@_PROPERTY
@given(st.text(max_size=40))
def test_any_override_applies_or_gives_a_hierarchy_error(tmp_path: Path, override: str) -> None:
    base = load_text(tmp_path, BASE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HierarchyWarning)
            apply_overrides(base, [override])
    except MemwallError as err:
        assert isinstance(err, HierarchyError)


# --- hostile files: each refused in one line at its own line --------------------------------


@pytest.mark.parametrize("old, new, message", [
    ("  vector: 10 TFLOP/s", "  vector: 10 TFLOP/s\n  units: " + "9" * 5000,
     "bad.yaml:9: compute.units: a number of 5000 characters, too long to read"),
    ("    latency: 500 ns", "    latency: 500 ns\n    efficiency:",
     "bad.yaml:23: memory.hbm.efficiency: empty; expected a fraction in (0, 1]"),
    ("  bf16: 100 TFLOP/s", "  bf16: 100 TFLOP/s\n    fp16: " + "[" * 40 + "]" * 40,
     "bad.yaml:7: compute.peak.fp16: nested deeper than 32 levels"),
    ("  weights: [hbm]\n  kv_cache: [hbm]\n", "  weights: &w [hbm]\n  kv_cache: *w\n",
     "bad.yaml:25: placement.kv_cache: YAML aliases (*name) are not supported"),
    ("    bandwidth: 5 TB/s", "    bandwidth: " + "9" * 400 + " TB/s",
     'bad.yaml:16: memory.l2.bandwidth: "' + "9" * 57 + '..." is not finite'),
])
def test_hostile_values_are_one_line_at_their_line(tmp_path: Path, old: str, new: str,
                                                   message: str) -> None:
    assert old in BASE
    with pytest.raises(HierarchyError) as e:
        load_text(tmp_path, BASE.replace(old, new, 1))
    assert str(e.value).startswith(str(tmp_path / message)), str(e.value)[:300]
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r'bad\.yaml:27: YAML syntax error: found '
                                             r'unexpected end of stream \(while scanning a '
                                             r'quoted scalar that starts here\)'):
        load_text(tmp_path, BASE + 'description: "never closed\n')


def test_nesting_deeper_than_python_recursion_is_refused_not_crashed(tmp_path: Path) -> None:
    deep = BASE + "description: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"
    with pytest.raises(HierarchyError, match=r"bad\.yaml:27: description(\.a){31}: nested deeper"):
        load_text(tmp_path, deep)
    with pytest.raises(HierarchyError, match=r"--set description=\[\[.*\.\.\.: description: "
                                             "nested deeper than 32"):
        load_text(tmp_path, BASE, ("description=" + "[" * 600 + "]" * 600,))


def test_an_empty_set_value_is_refused_not_the_default(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match=r"--set memory\.l2\.efficiency=: memory\.l2\."
                                             r"efficiency: empty; expected a fraction"):
        load_text(tmp_path, BASE, ("memory.l2.efficiency=",))
