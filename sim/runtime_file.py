"""Runtime files (schema v1, see runtimes/README.md): read, override, validate, construct.

Read exactly as hierarchy files are (sim/document.py): located YAML, every value with a unit,
one-line errors naming file, line, key and value; `--set runtime.PATH=VALUE` overrides.

    schema_version: 1
    description: NVIDIA TensorRT-LLM
    kernels: {launch: 2 us, host: 0 us, step: 20 us}  # per kernel on the device and on the
    #                                                   host; per step (host work)
    fusion: {epilogues: true, attention: true}
    efficiency: {matmul: 0.75, matmul_tile: [128, 128, 64], memory: 0.85, vector: 0.5}
    collective: {algorithm: auto, latency: 5 us}
    prefetch_depth: 0
    devices:                                  # figures that differ on one device
      mi300x: {efficiency: {matmul: 0.5}}
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim import document
from sim.cost import WIDER
from sim.runtime import COLLECTIVES, Runtime
from sim.units import expected
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

PRECISIONS = tuple(WIDER)


class RuntimeFileError(FileError):
    """A runtime file or override that cannot be used; the message is one line."""

SCHEMA_VERSION = 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_BOOL = "true or false"
_TOP = {
    "schema_version": (True, f"the schema version, {SCHEMA_VERSION}"),
    "name": (False, "a name such as tensorrt-llm"),
    "description": (False, "a line of text"),
    "kernels": (True, "a mapping with launch (and step)"),
    "fusion": (False, "a mapping with epilogues and attention"),
    "efficiency": (False, "a mapping with matmul, matmul_tile, memory, vector"),
    "collective": (False, "a mapping with algorithm and latency"),
    "prefetch_depth": (False, "an integer >= 0 such as 1"),
    "devices": (False, "a mapping from hierarchy name to figures that differ on it"),
}
_KERNELS = {
    "launch": (True, expected("time") + " per kernel"),
    "step": (False, expected("time") + " per step"),
    "host": (False, expected("time") + " per kernel, on the host"),
}
_FUSION = {
    "epilogues": (False, _BOOL + ": elementwise ops in the epilogue of their matmul"),
    "attention": (False, _BOOL + ": scores, softmax and values as one kernel"),
}
_EFFICIENCY = {
    "matmul": (False, FRACTION),
    "matmul_by_dtype": (False, "a mapping from precision to fraction such as {fp8: 0.71}"),
    "matmul_tile": (False, "three integers [M, N, K] from 1 to 4096 such as [128, 128, 64]"),
    "memory": (False, FRACTION),
    "memory_by_dtype": (False, "a mapping from weight precision to fraction such as {int4: 0.6}"),
    "vector": (False, FRACTION),
}
_COLLECTIVE = {
    "algorithm": (False, f"one of {', '.join(COLLECTIVES)}"),
    "latency": (False, expected("time")),
}


def load_runtime(name_or_path: str | os.PathLike[str], search_dirs: Sequence[Path] = (),
                 overrides: Sequence[str] = (), origins: Sequence[str] = ()) -> Runtime:
    """Read a runtime file (a bare name is looked up in `search_dirs`), apply overrides."""
    return document.load(KIND, name_or_path, search_dirs, overrides, origins)


def parse_runtime(text: str, name: str = "runtime", overrides: Sequence[str] = (),
                  origins: Sequence[str] = ()) -> Runtime:
    """A runtime from YAML text; errors name it as `<name>:<line>`."""
    return document.parse(KIND, text, name, overrides, origins)


def runtime_from_data(data: Mapping[str, Any], name: str = "runtime",
                      overrides: Sequence[str] = (), origins: Sequence[str] = ()) -> Runtime:
    """A runtime from a mapping shaped like the file."""
    return document.from_data(KIND, data, name, overrides, origins)


def _build(root: Node, path: str, stem: str) -> Runtime:
    """Validate and construct a Runtime from its located tree (document.Kind.build)."""
    top = as_mapping(root, "", _TOP)
    version = as_integer(top["schema_version"], "schema_version", SCHEMA_VERSION,
                         SCHEMA_VERSION, _TOP["schema_version"][1])
    k = as_mapping(top["kernels"], "kernels", _KERNELS)
    fu = as_mapping(top["fusion"], "fusion", _FUSION) if "fusion" in top else {}
    ef = as_mapping(top["efficiency"], "efficiency", _EFFICIENCY) if "efficiency" in top else {}
    co = as_mapping(top["collective"], "collective", _COLLECTIVE) if "collective" in top else {}
    return Runtime(
        name=as_text(top["name"], "name", _TOP["name"][1], pattern=_NAME) if "name" in top
        else stem,
        launch_s=as_quantity(k["launch"], "kernels.launch", "time"),
        step_s=as_quantity(k["step"], "kernels.step", "time") if "step" in k else 0.0,
        host_s=as_quantity(k["host"], "kernels.host", "time") if "host" in k else 0.0,
        fuse_epilogues=_flag(fu.get("epilogues"), "fusion.epilogues"),
        fuse_attention=_flag(fu.get("attention"), "fusion.attention"),
        matmul_efficiency=as_fraction(ef.get("matmul"), "efficiency.matmul"),
        matmul_by_dtype=_by_dtype(ef.get("matmul_by_dtype"), "matmul_by_dtype"),
        matmul_tile=_tile(ef.get("matmul_tile")),
        memory_efficiency=as_fraction(ef.get("memory"), "efficiency.memory"),
        memory_by_dtype=_by_dtype(ef.get("memory_by_dtype"), "memory_by_dtype"),
        vector_efficiency=as_fraction(ef.get("vector"), "efficiency.vector"),
        collective=as_choice(co.get("algorithm"), "collective.algorithm", COLLECTIVES,
                             default="ring"),
        collective_latency_s=as_quantity(co["latency"], "collective.latency", "time")
        if "latency" in co else 0.0,
        prefetch_depth=as_integer(top.get("prefetch_depth"), "prefetch_depth", 0, 1024,
                                  _TOP["prefetch_depth"][1], default=0),
        description=as_text(top["description"], "description", "text")
        if "description" in top else "",
        devices=_devices(top["devices"]) if "devices" in top else {},
        schema_version=version,
        path=path,
    )


def _flag(node: Node | None, path: str) -> bool:
    if node is None:
        return False
    if not isinstance(node.value, bool):
        raise value_error(node, path, f"is not {_BOOL}; expected {_BOOL}")
    return node.value


def _by_dtype(node: Node | None, key: str) -> dict[str, float]:
    if node is None:
        return {}
    wanted = _EFFICIENCY[key][1]
    if not isinstance(node.value, dict) or not node.value:
        raise value_error(node, f"efficiency.{key}", f"is not a mapping; expected {wanted}")
    out = {}
    for dtype, child in node.value.items():
        if dtype not in PRECISIONS:
            raise value_error(child, f"efficiency.{key}.{dtype}",
                              f"names no precision; expected one of {', '.join(PRECISIONS)}")
        out[dtype] = as_fraction(child, f"efficiency.{key}.{dtype}")
    return out


def _tile(node: Node | None) -> tuple[int, int, int] | None:
    if node is None:
        return None
    wanted = _EFFICIENCY["matmul_tile"][1]
    items = node.value if isinstance(node.value, list) else None
    if items is None or len(items) != 3:
        detail = "is not a list" if items is None else f"of {len(items)}"
        raise value_error(node, "efficiency.matmul_tile", f"{detail}; expected {wanted}")
    m, n, k = (as_integer(x, "efficiency.matmul_tile", 1, 4096, wanted) for x in items)
    return m, n, k


def _devices(node: Node) -> dict[str, tuple[str, ...]]:
    """devices: {hierarchy name: a mapping like the file's} -> name -> "PATH=VALUE" texts,
    applied (and so checked) when the runtime runs on that device."""
    if not isinstance(node.value, dict):
        raise value_error(node, "devices", f"is not a mapping; expected {_TOP['devices'][1]}")
    out: dict[str, tuple[str, ...]] = {}
    for device, child in node.value.items():
        if not isinstance(child.value, dict) or not child.value:
            raise value_error(child, f"devices.{device}", "is not a non-empty mapping; "
                              "expected figures such as {efficiency: {matmul: 0.5}}")
        out[device] = tuple(_flatten(child, "", f"devices.{device}"))
    return out


def _flatten(node: Node, prefix: str, shown: str) -> list[str]:
    texts = []
    for key, child in node.value.items():
        path = f"{prefix}{key}"
        if key == "devices" and not prefix:
            raise value_error(child, f"{shown}.devices", "nests devices; expected figures")
        if isinstance(child.value, dict):
            texts += _flatten(child, f"{path}.", shown)
        elif isinstance(child.value, list):
            texts.append(f"{path}=[{', '.join(str(x.value) for x in child.value)}]")
        elif child.value is None:
            raise value_error(child, f"{shown}.{path}", "is empty; expected a value")
        else:
            v = child.value
            texts.append(f"{path}={str(v).lower() if isinstance(v, bool) else v}")
    return texts


_NOT_SOFTWARE = ("sha256", "overrides", "source", "devices")  # provenance; devices applied


def runtime_to_dict(r: Runtime) -> dict[str, Any]:
    """`r` as plain JSON data in SI units: the stack as it ran (device entries applied)."""
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(r) if f.name not in _NOT_SOFTWARE
            for v in (getattr(r, f.name),)}


def runtime_from_dict(d: Mapping[str, Any]) -> Runtime:
    """The inverse of runtime_to_dict (no source document: it cannot be overridden)."""
    fields = {f.name for f in dataclasses.fields(Runtime)} - set(_NOT_SOFTWARE)
    kw = {k: v for k, v in d.items() if k in fields}
    if kw.get("matmul_tile") is not None:
        kw["matmul_tile"] = tuple(kw["matmul_tile"])
    return Runtime(**kw)


KIND = document.Kind(
    what="runtime", error=RuntimeFileError, build=_build, example="tensorrt-llm",
    keys="schema_version and kernels", readme="runtimes/README.md")
