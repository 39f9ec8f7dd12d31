"""Hierarchy files (schema v2, see hierarchies/README.md): read, override, validate, construct.

The file is read once and composed, never constructed, into a tree of `Node`s that remember
where each value came from: "hierarchies/x.yaml:14", or "--set memory.l2.capacity=256 MiB" for
a value given as an override. Overrides edit that tree before validation, so both get the same
checks and the same one-line messages: "<where>: <key path>: <value> ...; expected <what>".
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim import document
from sim.cache import POLICIES as CACHE_POLICIES
from sim.hierarchy import (
    Compute,
    Energy,
    Hierarchy,
    Interconnect,
    Level,
    LevelEnergy,
    Placement,
)
from sim.opgraph import DTYPES
from sim.units import expected, format_quantity
from sim.yamlfile import (
    FRACTION,
    FileError,
    Node,
    as_choice,
    as_fraction,
    as_integer,
    as_mapping,
    as_quantity,
    as_text,
    value_error,
)


class HierarchyError(FileError):
    """A hierarchy file or override that cannot be used; the message is one line."""


class HierarchyWarning(UserWarning):
    """A hierarchy that loads but looks like a typo (an inner level far larger or slower)."""


SCHEMA_VERSION = 2
#: what schema 1 carried in `compute` that belongs to the software stack (runtimes/)
SOFTWARE_KEYS = ("dispatch", "matmul_efficiency", "vector_efficiency", "prefetch_depth",
                 "fusion", "matmul_tile")
TOPOLOGIES = ("ring", "switch", "full")
CAPACITY_TYPO_RATIO = 8  # inner/outer capacity above this warns (A100 registers/L1 is 1.3)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LEVELS = "a list of level names such as [hbm]"

# section -> key -> (required, what is expected)
_TOP = {
    "schema_version": (True, f"the schema version, {SCHEMA_VERSION}"),
    "name": (False, "a name such as hbm_accel"),
    "description": (False, "a line of text"),
    "compute": (True, "a mapping with clock, peak, vector and dispatch"),
    "memory": (True, "a list of levels, innermost first"),
    "placement": (True, "a mapping with weights, kv_cache and activations"),
    "interconnect": (False, "a mapping with link_bandwidth, latency, topology, max_devices"),
    "runtime": (True, "the default runtime, a bundled name such as tensorrt-llm"),
    "energy": (False, "a mapping with idle, compute, memory (and interconnect)"),
}
_COMPUTE = {
    "clock": (True, expected("frequency")),
    "peak": (True, 'a mapping from precision to rate such as {bf16: "989.4 TFLOP/s"}'),
    "vector": (True, expected("rate")),
    "units": (False, "an integer >= 1 such as 108 (SMs): matmul tiles run in waves over them"),
}
_LEVEL = {
    "name": (True, "a level name such as l2"),
    "capacity": (True, expected("size")),
    "bandwidth": (True, expected("bandwidth")),
    "latency": (True, expected("time")),
    "efficiency": (False, FRACTION),
    "policy": (False, "none, or a cache policy in sim.cache.POLICIES such as lru"),
}
_PLACEMENT = {k: (True, _LEVELS) for k in ("weights", "kv_cache", "activations")}
_INTERCONNECT = {
    "link_bandwidth": (True, expected("bandwidth") + " per direction"),
    "latency": (True, expected("time")),
    "topology": (True, f"one of {', '.join(TOPOLOGIES)}"),
    "max_devices": (True, "an integer >= 1 such as 8"),
    "efficiency": (False, FRACTION),
}


_STATIC = 'a power such as "2 W" or a power per capacity such as "1.5 mW/MiB"'
_ENERGY = {
    "idle": (True, expected("power") + ": the board powered and idle"),
    "compute": (True, 'a mapping from each precision of compute.peak, and vector, to an '
                'energy per FLOP such as {bf16: "0.4 pJ/FLOP", vector: "2 pJ/FLOP"}'),
    "memory": (True, 'a mapping from each level to {access: "3.9 pJ/bit", static: ...}'),
    "interconnect": (False, expected("energy_per_byte") + " sent over the links"),
}
_LEVEL_ENERGY = {
    "access": (True, expected("energy_per_byte") + " read or written"),
    "static": (False, _STATIC),
}


def policy_names() -> tuple[str, ...]:
    """What a level's `policy` may be: "none", or the name of a class in sim.cache.POLICIES."""
    return ("none", *CACHE_POLICIES)


def load_hierarchy(
    name_or_path: str | os.PathLike[str],
    search_dirs: Sequence[Path] = (),
    overrides: Sequence[str] = (),
    origins: Sequence[str] = (),
) -> Hierarchy:
    """Read a hierarchy file (a bare name is looked up in `search_dirs`), apply overrides, build."""
    return document.load(KIND, name_or_path, search_dirs, overrides, origins)


def parse_hierarchy(text: str, name: str = "hierarchy", overrides: Sequence[str] = (),
                    origins: Sequence[str] = ()) -> Hierarchy:
    """A hierarchy from YAML text (no file); errors name it as `<name>:<line>`."""
    return document.parse(KIND, text, name, overrides, origins)


def hierarchy_from_data(data: Mapping[str, Any], name: str = "hierarchy",
                        overrides: Sequence[str] = (), origins: Sequence[str] = ()) -> Hierarchy:
    """A hierarchy from a mapping shaped like the file (values as the file takes them:
    strings with units, numbers, lists); errors name `<name>:<line>` of the mapping written
    out as YAML, and the key path."""
    return document.from_data(KIND, data, name, overrides, origins)


def apply_overrides(h: Hierarchy, overrides: Sequence[str],
                    origins: Sequence[str] = ()) -> Hierarchy:
    """`h` with dotted-path overrides ("memory.l2.capacity=256 MiB") applied and re-validated.

    `origins[i]` is where override i came from ("sweeps/x.yaml:7"), named by its errors;
    without one, errors name it as "--set PATH=VALUE".
    """
    if h.source is None:
        raise HierarchyError(f"hierarchy {h.name}: no source document to apply overrides to")
    return h.source.rebuild(overrides, origins)


_NOT_PHYSICAL = ("sha256", "overrides", "source")  # provenance, not the device


def hierarchy_to_dict(h: Hierarchy) -> dict[str, Any]:
    """`h` as plain JSON-serialisable data in SI units (field names carry the units): the
    device, not where its file came from (sha256, overrides)."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                    if f.name not in _NOT_PHYSICAL}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(h)


# --- validation and construction -----------------------------------------------------------


def _build(root: Node, path: str, stem: str) -> Hierarchy:
    """Validate and construct a Hierarchy from its located tree (document.Kind.build)."""
    _refuse_schema_1(root)
    top = as_mapping(root, "", _TOP)
    version = as_integer(top["schema_version"], "schema_version", SCHEMA_VERSION, SCHEMA_VERSION,
                       _TOP["schema_version"][1])
    compute = _compute(top["compute"])
    levels = _levels(top["memory"], compute.clock_hz)
    interconnect = top.get("interconnect")
    energy = top.get("energy")
    return Hierarchy(
        name=as_text(top["name"], "name", _TOP["name"][1]) if "name" in top else stem,
        compute=compute,
        levels=levels,
        placement=_placement(top["placement"], levels),
        interconnect=None if interconnect is None else _interconnect(interconnect,
                                                                     compute.clock_hz),
        description=as_text(top["description"], "description", "text") if "description" in top
        else "",
        runtime=as_text(top["runtime"], "runtime", _TOP["runtime"][1], pattern=_NAME),
        energy=None if energy is None else _energy(energy, compute, levels,
                                                   interconnect is not None),
        schema_version=version,
        path=path,
    )


def _refuse_schema_1(root: Node) -> None:
    """Schema 1 files carried software figures in `compute`; say where they went."""
    if not isinstance(root.value, dict) or "schema_version" not in root.value:
        return
    v = root.value["schema_version"]
    if v.value != 1:
        return
    compute = root.value.get("compute")
    moved = [k for k in SOFTWARE_KEYS
             if compute is not None and isinstance(compute.value, dict) and k in compute.value]
    raise HierarchyError(
        f"{v.where}: schema_version: 1 is the old schema, whose compute section also carried "
        f"the software stack ({', '.join(moved) or 'dispatch, efficiencies, fusion'}); "
        "expected schema_version: 2 with those figures in a runtime file (runtimes/README.md) "
        "and `runtime: NAME` naming it")


def _compute(node: Node) -> Compute:
    f = as_mapping(node, "compute", _COMPUTE)
    clock = as_quantity(f["clock"], "compute.clock", "frequency")
    peak = as_mapping(f["peak"], "compute.peak", {d: (False, expected("rate")) for d in DTYPES},
                   what="precision")
    if not peak:
        raise value_error(f["peak"], "compute.peak",
                     f"has no precisions; expected {_COMPUTE['peak'][1]}")
    return Compute(
        clock_hz=clock,
        peak_flops_per_s={d: as_quantity(v, f"compute.peak.{d}", "rate") for d, v in peak.items()},
        vector_flops_per_s=as_quantity(f["vector"], "compute.vector", "rate"),
        units=as_integer(f.get("units"), "compute.units", 1, 1_000_000, _COMPUTE["units"][1],
                         default=1),
    )


def _levels(node: Node, clock_hz: float) -> tuple[Level, ...]:
    if not isinstance(node.value, list) or not node.value:
        detail = "has no levels" if isinstance(node.value, list) else "is not a list of levels"
        raise value_error(node, "memory", f"{detail}; expected {_TOP['memory'][1]}")
    levels: list[Level] = []
    first: dict[str, dict[str, Node]] = {}
    for i, entry in enumerate(node.value):
        named = entry.value.get("name") if isinstance(entry.value, dict) else None
        label = (f"memory.{named.value}" if named and isinstance(named.value, str)
                 else f"memory[{i}]")
        f = as_mapping(entry, label, _LEVEL)
        name = as_text(f["name"], f"{label}.name", _LEVEL["name"][1], pattern=_NAME)
        if name in first:
            raise value_error(f["name"], f"memory.{name}.name",
                         f"duplicate level name (first at {first[name]['name'].where}); "
                         "expected each level named once")
        first[name] = f
        p = f"memory.{name}"
        levels.append(Level(
            name=name,
            capacity_bytes=round(as_quantity(f["capacity"], f"{p}.capacity", "size")),
            bandwidth_bytes_per_s=as_quantity(f["bandwidth"], f"{p}.bandwidth", "bandwidth"),
            latency_s=as_quantity(f["latency"], f"{p}.latency", "time", clock_hz=clock_hz),
            efficiency=as_fraction(f.get("efficiency"), f"{p}.efficiency"),
            policy=as_choice(f.get("policy"), f"{p}.policy", policy_names(), default="none"),
        ))
    _warn_order(levels, first)
    return tuple(levels)


_ORDER = (  # key, Level attribute, kind, likely typo given (inner, outer), wording
    ("capacity", "capacity_bytes", "size", lambda i, o: i > CAPACITY_TYPO_RATIO * o,
     f"is more than {CAPACITY_TYPO_RATIO}x"),
    ("bandwidth", "bandwidth_bytes_per_s", "bandwidth", lambda i, o: i < o, "is slower than"),
    ("latency", "latency_s", "time", lambda i, o: i > o, "is longer than"),
)


def _warn_order(levels: list[Level], fields: dict[str, dict[str, Node]]) -> None:
    for inner, outer in zip(levels, levels[1:], strict=False):
        for key, attr, kind, odd, wording in _ORDER:
            a, b = getattr(inner, attr), getattr(outer, attr)
            if odd(a, b):
                _warn(f"{fields[inner.name][key].where}: memory.{inner.name}.{key}: "
                      f"{format_quantity(a, kind)} {wording} the next outer level {outer.name} "
                      f"({format_quantity(b, kind)}); a unit typo?")


def _warn(message: str) -> None:
    warnings.warn(HierarchyWarning(message), stacklevel=6)


def _placement(node: Node, levels: tuple[Level, ...]) -> Placement:
    f = as_mapping(node, "placement", _PLACEMENT)
    names = [lv.name for lv in levels]
    lists: dict[str, tuple[str, ...]] = {}
    for key, child in f.items():
        items = child.value if isinstance(child.value, list) else [child]
        if not items:
            raise value_error(child, f"placement.{key}", f"names no level; expected {_LEVELS}")
        for item in items:
            if not isinstance(item.value, str) or item.value not in names:
                close = difflib.get_close_matches(str(item.value), names, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise value_error(item, f"placement.{key}", f"is not a level; {hint}expected level "
                             f"names from {', '.join(names)}")
        chosen = tuple(item.value for item in items)
        if len(set(chosen)) != len(chosen):
            raise value_error(child, f"placement.{key}", "names a level twice; expected each once")
        lists[key] = chosen
    return Placement(**lists)


def _interconnect(node: Node, clock_hz: float) -> Interconnect:
    f = as_mapping(node, "interconnect", _INTERCONNECT)
    return Interconnect(
        link_bandwidth_bytes_per_s=as_quantity(f["link_bandwidth"], "interconnect.link_bandwidth",
                                             "bandwidth"),
        latency_s=as_quantity(f["latency"], "interconnect.latency", "time", clock_hz=clock_hz),
        topology=as_choice(f["topology"], "interconnect.topology", TOPOLOGIES, default=""),
        max_devices=as_integer(f["max_devices"], "interconnect.max_devices", 1, 1_000_000,
                             _INTERCONNECT["max_devices"][1]),
        efficiency=as_fraction(f.get("efficiency"), "interconnect.efficiency"),
    )


def _energy(node: Node, compute: Compute, levels: tuple[Level, ...],
            has_links: bool) -> Energy:
    """The `energy` section: complete, or refused (a run's energy would silently lack a
    part): every precision of compute.peak, vector, every level, the links if any."""
    f = as_mapping(node, "energy", _ENERGY)
    per_flop = {d: (True, expected("energy_per_flop")) for d in compute.peak_flops_per_s}
    c = as_mapping(f["compute"], "energy.compute", {**per_flop, "vector": (True, expected(
        "energy_per_flop"))}, what="precision (those of compute.peak, and vector)")
    names = [lv.name for lv in levels]
    m = as_mapping(f["memory"], "energy.memory", {n: (True, _ENERGY["memory"][1]) for n in names},
                   what="level")
    by_level = {}
    for name in names:
        p = f"energy.memory.{name}"
        e = as_mapping(m[name], p, _LEVEL_ENERGY)
        static = e.get("static")
        per_capacity = static is not None and "/" in str(static.value)
        watts = 0.0 if static is None else as_quantity(
            static, f"{p}.static", "power_per_size" if per_capacity else "power")
        by_level[name] = LevelEnergy(
            access_j_per_byte=as_quantity(e["access"], f"{p}.access", "energy_per_byte"),
            static_w=0.0 if per_capacity else watts,
            static_w_per_byte=watts if per_capacity else 0.0)
    link = f.get("interconnect")
    if has_links and link is None:
        raise value_error(node, "energy.interconnect", "missing while the device has an "
                          f"interconnect; expected {_ENERGY['interconnect'][1]}")
    if link is not None and not has_links:
        raise value_error(link, "energy.interconnect", "given, but the device has no "
                          "interconnect section; expected none")
    return Energy(
        idle_w=as_quantity(f["idle"], "energy.idle", "power"),
        matmul_j_per_flop={d: as_quantity(c[d], f"energy.compute.{d}", "energy_per_flop")
                           for d in compute.peak_flops_per_s},
        vector_j_per_flop=as_quantity(c["vector"], "energy.compute.vector", "energy_per_flop"),
        levels=by_level,
        interconnect_j_per_byte=None if link is None else as_quantity(
            link, "energy.interconnect", "energy_per_byte"),
    )


KIND = document.Kind(
    what="hierarchy", error=HierarchyError, build=_build, example="hbm_accel.yaml",
    keys="schema_version, compute, memory and placement", readme="hierarchies/README.md")
