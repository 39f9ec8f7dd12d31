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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from sim.errors import MemwallError
from sim.hierarchy import Compute, Hierarchy, Interconnect, Level, Placement
from sim.opgraph import DTYPES
from sim.units import UnitError, expected, format_quantity, parse_quantity


class HierarchyError(MemwallError):
    """A hierarchy file or override that cannot be used; the message is one line."""


class HierarchyWarning(UserWarning):
    """A hierarchy that loads but looks like a typo (an inner level far larger or slower)."""


@dataclass
class Node:
    """One value of the raw tree with the place it came from."""

    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    where: str  # "path/x.yaml:14" or "--set PATH=VALUE"
    key_where: str = ""  # where the key naming this value is, if any


SCHEMA_VERSION = 1
POLICIES = ("none", "lru", "pin")
TOPOLOGIES = ("ring", "switch", "full")
CAPACITY_TYPO_RATIO = 8  # inner/outer capacity above this warns (A100 registers/L1 is 1.3)
_LIMITS = {  # kind -> (smallest, largest) SI value accepted; outside is almost surely a typo
    "size": (1.0, 2.0**50),  # 1 B .. 1 PiB per device
    "bandwidth": (1.0, 1e18),  # .. 1 EB/s (Cerebras WSE-3 SRAM is 21 PB/s)
    "time": (0.0, 1.0),  # .. 1 s for a latency or a launch
    "frequency": (1e6, 1e11),  # 1 MHz .. 100 GHz
    "rate": (1e6, 1e19),  # .. 10 EFLOP/s per device
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}
_FRACTION = "a fraction in (0, 1] such as 0.85"
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
    "matmul_efficiency": (False, _FRACTION),
    "vector_efficiency": (False, _FRACTION),
    "prefetch_depth": (False, "an integer >= 0 such as 1"),
}
_LEVEL = {
    "name": (True, "a level name such as l2"),
    "capacity": (True, expected("size")),
    "bandwidth": (True, expected("bandwidth")),
    "latency": (True, expected("time")),
    "efficiency": (False, _FRACTION),
    "policy": (False, f"one of {', '.join(POLICIES)}"),
}
_PLACEMENT = {k: (True, _LEVELS) for k in ("weights", "kv_cache", "activations")}
_INTERCONNECT = {
    "link_bandwidth": (True, expected("bandwidth") + " per direction"),
    "latency": (True, expected("time")),
    "topology": (True, f"one of {', '.join(TOPOLOGIES)}"),
    "max_devices": (True, "an integer >= 1 such as 8"),
    "efficiency": (False, _FRACTION),
}


def load_hierarchy(
    name_or_path: str | os.PathLike[str],
    search_dirs: Sequence[Path] = (),
    overrides: Sequence[str] = (),
) -> Hierarchy:
    """Read a hierarchy file (a bare name is looked up in `search_dirs`), apply overrides, build."""
    path, text = _read(name_or_path, search_dirs)
    root = _compose(text, lambda line: f"{path}:{line}", "")
    if root is None or root.value is None:
        raise HierarchyError(f"{path}:1: empty file; expected a hierarchy with schema_version, "
                             "compute, memory and placement (see hierarchies/README.md)")
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
    return _build(_override(h.document, overrides, origins), h.path, stem)


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


def _compose(text: str, locate: Callable[[int], str], path: str) -> Node | None:
    """Compose YAML (no Python objects are ever constructed) into a located Node tree."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or e.context or "invalid YAML"
        raise HierarchyError(f"{locate(line)}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        line = text[: getattr(e, "position", 0)].count("\n") + 1
        raise HierarchyError(f"{locate(line)}: YAML error: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise HierarchyError(f"{locate(1)}: YAML nested too deeply") from None
    return None if root is None else _node(root, locate, path, set())


def _node(n: yaml.Node, locate: Callable[[int], str], path: str, seen: set[int]) -> Node:
    where = locate(n.start_mark.line + 1)
    at = f"{where}: {path}:" if path else f"{where}:"
    if id(n) in seen:
        raise HierarchyError(f"{at} YAML aliases (*name) are not supported; write the value out")
    seen.add(id(n))
    if isinstance(n, yaml.MappingNode) and n.tag == _YAML + "map":
        out: dict[str, Node] = {}
        for k, v in n.value:
            kw = locate(k.start_mark.line + 1)
            if not (isinstance(k, yaml.ScalarNode) and k.tag == _YAML + "str"):
                shown = k.value if isinstance(k, yaml.ScalarNode) else k.tag
                raise HierarchyError(f"{kw}: {path or 'top level'}: key {shown!s} is not a plain "
                                     "name; expected a key such as capacity")
            if id(v) in seen:
                raise HierarchyError(f"{kw}: {_join(path, k.value)}: YAML aliases (*name) are "
                                     "not supported; write the value out")
            if k.value in out:
                raise HierarchyError(f'{kw}: {_join(path, k.value)}: duplicate key "{k.value}" '
                                     f"(first at {out[k.value].key_where}); expected each once")
            out[k.value] = _node(v, locate, _join(path, k.value), seen)
            out[k.value].key_where = kw
        return Node(out, where)
    if isinstance(n, yaml.SequenceNode) and n.tag == _YAML + "seq":
        return Node([_node(v, locate, _item(path, i, v), seen) for i, v in enumerate(n.value)],
                    where)
    if isinstance(n, yaml.ScalarNode) and n.tag in _SCALAR_TAGS:
        value = n.value if n.tag == _YAML + "str" else SafeConstructor().construct_object(n)
        return Node(value, where)
    raise HierarchyError(f'{at} YAML tag "{n.tag}" is not allowed; expected plain mappings, '
                         "lists, strings and numbers (nothing is ever constructed)")


def _item(path: str, i: int, v: yaml.Node) -> str:
    if isinstance(v, yaml.MappingNode):
        for k, name in v.value:
            if getattr(k, "value", None) == "name" and isinstance(name, yaml.ScalarNode):
                return _join(path, name.value)
    return f"{path}[{i}]"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- overrides -----------------------------------------------------------------------------


def _override(root: Node, overrides: Sequence[str], origins: Sequence[str] = ()) -> Node:
    root = copy.deepcopy(root)
    for i, text in enumerate(overrides):
        where = origins[i] if i < len(origins) else f"--set {text}"
        key, sep, value = text.partition("=")
        segments = key.strip().split(".")
        if not sep or not all(segments):
            raise HierarchyError(f"{where}: expected PATH=VALUE such as memory.l2.capacity=256 MiB")
        new = _compose(value, lambda _line, w=where: w, key.strip()) or Node(None, where)
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
    top = _fields(root, "", _TOP)
    version = _integer(top["schema_version"], "schema_version", SCHEMA_VERSION, SCHEMA_VERSION,
                       _TOP["schema_version"][1])
    compute = _compute(top["compute"])
    levels = _levels(top["memory"], compute.clock_hz)
    interconnect = top.get("interconnect")
    return Hierarchy(
        name=_text(top["name"], "name", _TOP["name"][1]) if "name" in top else stem,
        compute=compute,
        levels=levels,
        placement=_placement(top["placement"], levels),
        interconnect=None if interconnect is None else _interconnect(interconnect,
                                                                     compute.clock_hz),
        description=_text(top["description"], "description", "text") if "description" in top
        else "",
        schema_version=version,
        path=path,
        document=root,
    )


def _compute(node: Node) -> Compute:
    f = _fields(node, "compute", _COMPUTE)
    clock = _quantity(f["clock"], "compute.clock", "frequency")
    peak = _fields(f["peak"], "compute.peak", {d: (False, expected("rate")) for d in DTYPES},
                   what="precision")
    if not peak:
        raise _error(f["peak"], "compute.peak",
                     f"has no precisions; expected {_COMPUTE['peak'][1]}")
    return Compute(
        clock_hz=clock,
        peak_flops_per_s={d: _quantity(v, f"compute.peak.{d}", "rate") for d, v in peak.items()},
        vector_flops_per_s=_quantity(f["vector"], "compute.vector", "rate"),
        dispatch_s=_quantity(f["dispatch"], "compute.dispatch", "time", clock_hz=clock),
        matmul_efficiency=_fraction(f.get("matmul_efficiency"), "compute.matmul_efficiency"),
        vector_efficiency=_fraction(f.get("vector_efficiency"), "compute.vector_efficiency"),
        prefetch_depth=_integer(f.get("prefetch_depth"), "compute.prefetch_depth", 0, 1024,
                                _COMPUTE["prefetch_depth"][1], default=1),
    )


def _levels(node: Node, clock_hz: float) -> tuple[Level, ...]:
    if not isinstance(node.value, list) or not node.value:
        detail = "has no levels" if isinstance(node.value, list) else "is not a list of levels"
        raise _error(node, "memory", f"{detail}; expected {_TOP['memory'][1]}")
    levels: list[Level] = []
    first: dict[str, dict[str, Node]] = {}
    for i, entry in enumerate(node.value):
        named = entry.value.get("name") if isinstance(entry.value, dict) else None
        label = (f"memory.{named.value}" if named and isinstance(named.value, str)
                 else f"memory[{i}]")
        f = _fields(entry, label, _LEVEL)
        name = _text(f["name"], f"{label}.name", _LEVEL["name"][1], pattern=_NAME)
        if name in first:
            raise _error(f["name"], f"memory.{name}.name",
                         f"duplicate level name (first at {first[name]['name'].where}); "
                         "expected each level named once")
        first[name] = f
        p = f"memory.{name}"
        levels.append(Level(
            name=name,
            capacity_bytes=round(_quantity(f["capacity"], f"{p}.capacity", "size")),
            bandwidth_bytes_per_s=_quantity(f["bandwidth"], f"{p}.bandwidth", "bandwidth"),
            latency_s=_quantity(f["latency"], f"{p}.latency", "time", clock_hz=clock_hz),
            efficiency=_fraction(f.get("efficiency"), f"{p}.efficiency"),
            policy=_choice(f.get("policy"), f"{p}.policy", POLICIES, default="none"),
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
    f = _fields(node, "placement", _PLACEMENT)
    names = [lv.name for lv in levels]
    lists: dict[str, tuple[str, ...]] = {}
    for key, child in f.items():
        items = child.value if isinstance(child.value, list) else [child]
        if not items:
            raise _error(child, f"placement.{key}", f"names no level; expected {_LEVELS}")
        for item in items:
            if not isinstance(item.value, str) or item.value not in names:
                close = difflib.get_close_matches(str(item.value), names, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise _error(item, f"placement.{key}", f"is not a level; {hint}expected level "
                             f"names from {', '.join(names)}")
        chosen = tuple(item.value for item in items)
        if len(set(chosen)) != len(chosen):
            raise _error(child, f"placement.{key}", "names a level twice; expected each once")
        lists[key] = chosen
    return Placement(**lists)


def _interconnect(node: Node, clock_hz: float) -> Interconnect:
    f = _fields(node, "interconnect", _INTERCONNECT)
    return Interconnect(
        link_bandwidth_bytes_per_s=_quantity(f["link_bandwidth"], "interconnect.link_bandwidth",
                                             "bandwidth"),
        latency_s=_quantity(f["latency"], "interconnect.latency", "time", clock_hz=clock_hz),
        topology=_choice(f["topology"], "interconnect.topology", TOPOLOGIES, default=""),
        max_devices=_integer(f["max_devices"], "interconnect.max_devices", 1, 1_000_000,
                             _INTERCONNECT["max_devices"][1]),
        efficiency=_fraction(f.get("efficiency"), "interconnect.efficiency"),
    )


# --- one value at a time -------------------------------------------------------------------


def _show(node: Node) -> str:
    v = node.value
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return "empty" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)


def _error(node: Node, path: str, detail: str) -> HierarchyError:
    return HierarchyError(f"{node.where}: {path}: {_show(node)} {detail}")


def _fields(node: Node, path: str, spec: dict[str, tuple[bool, str]],
            what: str = "key") -> dict[str, Node]:
    """The non-empty keys of a mapping, after refusing unknown and missing ones."""
    if not isinstance(node.value, dict):
        keys = ", ".join(spec)
        at = f"{node.where}: {path}:" if path else f"{node.where}:"
        raise HierarchyError(f"{at} {_show(node)} is not a mapping; expected keys from {keys}")
    for key, child in node.value.items():
        if key not in spec:
            close = difflib.get_close_matches(key, spec, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise HierarchyError(f"{child.key_where}: {_join(path, key)}: unknown {what}; {hint}"
                                 f"expected one of {', '.join(spec)}")
    for key, (required, wanted) in spec.items():
        if required and (key not in node.value or node.value[key].value is None):
            where = node.value[key].where if key in node.value else node.where
            raise HierarchyError(f"{where}: {_join(path, key)}: missing required key; "
                                 f"expected {wanted}")
    return {k: v for k, v in node.value.items() if v.value is not None}


def _quantity(node: Node, path: str, kind: str, *, clock_hz: float | None = None) -> float:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _error(node, path, f"is not a quantity; expected {expected(kind)}")
    try:
        value = parse_quantity(str(v), kind, clock_hz=clock_hz)
    except UnitError as e:
        raise HierarchyError(f"{node.where}: {path}: {e}") from None
    low, high = _LIMITS[kind]
    if value < 0 or (value == 0 and low > 0):
        sign = "negative" if value < 0 else "zero"
        raise _error(node, path, f"is {sign}; expected a positive {expected(kind)[2:]}")
    if value > high or 0 < value < low:
        side, bound = ("larger", high) if value > high else ("smaller", low)
        raise _error(node, path, f"is {side} than {format_quantity(bound, kind)}, surely a typo; "
                     f"expected {expected(kind)}")
    return value


def _fraction(node: Node | None, path: str) -> float:
    if node is None:
        return 1.0
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise _error(node, path, f"is not a fraction; expected {_FRACTION}")
    return float(v)


def _integer(node: Node | None, path: str, low: int, high: int, wanted: str,
             default: int | None = None) -> int:
    if node is None and default is not None:
        return default
    if node is None:
        raise HierarchyError(f"{path}: missing; expected {wanted}")
    if isinstance(node.value, bool) or not isinstance(node.value, int):
        raise _error(node, path, f"is not an integer; expected {wanted}")
    if not low <= node.value <= high:
        raise _error(node, path, f"is out of range; expected {wanted}")
    return node.value


def _text(node: Node, path: str, wanted: str, pattern: re.Pattern[str] | None = None) -> str:
    v = node.value
    if not isinstance(v, str) or not v.strip() or (pattern and not pattern.fullmatch(v)):
        raise _error(node, path, f"is not valid; expected {wanted}")
    return v


def _choice(node: Node | None, path: str, options: tuple[str, ...], default: str) -> Any:
    if node is None:
        return default
    if not isinstance(node.value, str) or node.value not in options:
        close = difflib.get_close_matches(str(node.value), options, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise _error(node, path, f"is not known; {hint}expected one of {', '.join(options)}")
    return node.value
