"""Hierarchy files (schema v1, see hierarchies/README.md): read, override, validate, construct.

The file is read once and composed, never constructed, into a tree of `Node`s that remember
where each value came from: "hierarchies/x.yaml:14", or "--set memory.l2.capacity=256 MiB" for
a value given as an override. Overrides edit that tree before validation, so both get the same
checks and the same one-line messages: "<where>: <key path>: <value> ...; expected <what>".
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sim.cache import POLICIES as CACHE_POLICIES
from sim.hierarchy import Compute, Hierarchy, Interconnect, Level, Placement
from sim.opgraph import DTYPES, FUSIONS
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
    compose,
    value_error,
)


class HierarchyError(FileError):
    """A hierarchy file or override that cannot be used; the message is one line."""


class HierarchyWarning(UserWarning):
    """A hierarchy that loads but looks like a typo (an inner level far larger or slower)."""


SCHEMA_VERSION = 1
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
}
_COMPUTE = {
    "clock": (True, expected("frequency")),
    "peak": (True, 'a mapping from precision to rate such as {bf16: "989.4 TFLOP/s"}'),
    "vector": (True, expected("rate")),
    "dispatch": (True, expected("time")),
    "matmul_efficiency": (False, FRACTION),
    "vector_efficiency": (False, FRACTION),
    "prefetch_depth": (False, "an integer >= 0 such as 1"),
    "fusion": (False, f"one of {', '.join(FUSIONS)}"),
    "units": (False, "an integer >= 1 such as 108 (SMs), given with matmul_tile"),
    "matmul_tile": (False, "three integers [M, N, K] from 1 to 4096 such as [64, 128, 64], "
                    "given with units"),
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


def policy_names() -> tuple[str, ...]:
    """What a level's `policy` may be: "none", or the name of a class in sim.cache.POLICIES."""
    return ("none", *CACHE_POLICIES)


def load_hierarchy(
    name_or_path: str | os.PathLike[str],
    search_dirs: Sequence[Path] = (),
    overrides: Sequence[str] = (),
) -> Hierarchy:
    """Read a hierarchy file (a bare name is looked up in `search_dirs`), apply overrides, build."""
    path, text = _read(name_or_path, search_dirs)
    with _as_hierarchy_error():
        root = compose(text, lambda line: f"{path}:{line}", "")
        if root is None or root.value is None:
            raise HierarchyError(f"{path}:1: empty file; expected a hierarchy with "
                                 "schema_version, compute, memory and placement "
                                 "(see hierarchies/README.md)")
        return _build(_override(root, overrides), path, Path(path).stem)


def apply_overrides(h: Hierarchy, overrides: Sequence[str],
                    origins: Sequence[str] = ()) -> Hierarchy:
    """`h` with dotted-path overrides ("memory.l2.capacity=256 MiB") applied and re-validated.

    `origins[i]` is where override i came from ("sweeps/x.yaml:7"), named by its errors;
    without one, errors name it as "--set PATH=VALUE".
    """
    if h.document is None:
        raise HierarchyError(f"hierarchy {h.name}: no source document to apply overrides to")
    stem = Path(h.path).stem if h.path else h.name
    with _as_hierarchy_error():
        return _build(_override(h.document, overrides, origins), h.path, stem)


@contextmanager
def _as_hierarchy_error() -> Iterator[None]:
    """The located checks raise FileError; callers of this module catch HierarchyError."""
    try:
        yield
    except HierarchyError:
        raise
    except FileError as e:
        raise HierarchyError(str(e)) from None


def hierarchy_to_dict(h: Hierarchy) -> dict[str, Any]:
    """`h` as plain JSON-serialisable data in SI units (field names carry the units)."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)
                    if f.name != "document"}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(h)


# --- reading -------------------------------------------------------------------------------


def _read(name_or_path: str | os.PathLike[str], search_dirs: Sequence[Path]) -> tuple[str, str]:
    given = os.fspath(name_or_path)
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    if any(s in given for s in seps):
        candidates = [Path(given)]
    else:
        names = [given] if given.endswith((".yaml", ".yml")) else [f"{given}.yaml", given]
        candidates = [Path(d) / n for d in search_dirs for n in names] + [Path(n) for n in names]
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        except OSError as e:
            raise HierarchyError(f"{candidate}: cannot read hierarchy file: {e.strerror}") from None
        try:
            return str(candidate), data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise HierarchyError(f"{candidate}:{line}: not UTF-8 text") from None
    where = ", ".join(str(d) for d in search_dirs) or "no search directories"
    raise HierarchyError(f'hierarchy "{given}" not found (looked in {where} and the current '
                         "directory); expected a bundled name such as hbm_accel.yaml or a path")


# --- overrides -----------------------------------------------------------------------------


def _override(root: Node, overrides: Sequence[str], origins: Sequence[str] = ()) -> Node:
    root = copy.deepcopy(root)
    for i, text in enumerate(overrides):
        where = origins[i] if i < len(origins) else f"--set {text}"
        key, sep, value = text.partition("=")
        segments = key.strip().split(".")
        if not sep or not all(segments):
            raise HierarchyError(f"{where}: expected PATH=VALUE such as memory.l2.capacity=256 MiB")
        new = compose(value, lambda _line, w=where: w, key.strip()) or Node(None, where)
        _set(root, segments, new, where)
    return root


def _set(root: Node, segments: list[str], new: Node, where: str) -> None:
    node = root
    for depth, seg in enumerate(segments):
        path, last = ".".join(segments[: depth + 1]), depth == len(segments) - 1
        if isinstance(node.value, dict):
            if last:
                new.key_where = where
                node.value[seg] = new
                return
            if seg not in node.value or node.value[seg].value is None:
                node.value[seg] = Node({}, where, where)
            node = node.value[seg]
        elif isinstance(node.value, list):
            names = [e.value["name"].value for e in node.value
                     if isinstance(e.value, dict) and "name" in e.value]
            if seg not in names:
                close = difflib.get_close_matches(seg, [str(n) for n in names], n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise HierarchyError(f'{where}: {path}: no entry named "{seg}"; {hint}'
                                     f"expected one of {', '.join(map(str, names))}")
            index = names.index(seg)
            if last:
                node.value[index] = new
                return
            node = node.value[index]
        else:
            raise HierarchyError(f"{where}: {path}: {'.'.join(segments[:depth])} is a single "
                                 "value, not a section; expected a path such as memory.l2.capacity")


# --- validation and construction -----------------------------------------------------------


def _build(root: Node, path: str, stem: str) -> Hierarchy:
    top = as_mapping(root, "", _TOP)
    version = as_integer(top["schema_version"], "schema_version", SCHEMA_VERSION, SCHEMA_VERSION,
                       _TOP["schema_version"][1])
    compute = _compute(top["compute"])
    levels = _levels(top["memory"], compute.clock_hz)
    interconnect = top.get("interconnect")
    return Hierarchy(
        name=as_text(top["name"], "name", _TOP["name"][1]) if "name" in top else stem,
        compute=compute,
        levels=levels,
        placement=_placement(top["placement"], levels),
        interconnect=None if interconnect is None else _interconnect(interconnect,
                                                                     compute.clock_hz),
        description=as_text(top["description"], "description", "text") if "description" in top
        else "",
        schema_version=version,
        path=path,
        document=root,
    )


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
        dispatch_s=as_quantity(f["dispatch"], "compute.dispatch", "time", clock_hz=clock),
        matmul_efficiency=as_fraction(f.get("matmul_efficiency"), "compute.matmul_efficiency"),
        vector_efficiency=as_fraction(f.get("vector_efficiency"), "compute.vector_efficiency"),
        prefetch_depth=as_integer(f.get("prefetch_depth"), "compute.prefetch_depth", 0, 1024,
                                _COMPUTE["prefetch_depth"][1], default=1),
        fusion=as_choice(f.get("fusion"), "compute.fusion", FUSIONS, default="none"),
        **_waves(f),
    )


def _waves(f: dict[str, Node]) -> dict[str, Any]:
    """compute.units and compute.matmul_tile, both or neither (see sim.cost.wave_factor)."""
    units, tile = f.get("units"), f.get("matmul_tile")
    if units is None and tile is None:
        return {}
    if units is None or tile is None:
        given, key = (units, "units") if tile is None else (tile, "matmul_tile")
        other = "matmul_tile" if tile is None else "units"
        raise value_error(given, f"compute.{key}", f"is given without compute.{other}; "
                          f"expected both or neither")
    wanted = _COMPUTE["matmul_tile"][1]
    items = tile.value if isinstance(tile.value, list) else None
    if items is None or len(items) != 3:
        detail = "is not a list" if items is None else f"of {len(items)}"
        raise value_error(tile, "compute.matmul_tile", f"{detail}; expected {wanted}")
    return {
        "units": as_integer(units, "compute.units", 1, 1_000_000, _COMPUTE["units"][1]),
        "matmul_tile": tuple(as_integer(n, "compute.matmul_tile", 1, 4096, wanted)
                             for n in items),
    }


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


