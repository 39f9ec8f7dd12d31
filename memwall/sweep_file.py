"""Sweep files: a base hierarchy, workloads, and a grid of hierarchy overrides; read and validated.

    base: hbm_accel.yaml          # a bundled name, or a path (relative to the sweep file)
    engine: des                   # des (default) or analytic
    runtime: tensorrt-llm         # optional; default the hierarchy's
    prefetch_depth: 1             # optional; default the runtime's
    workloads:
      - {workload: gpt2, prompt_len: 16, gen_len: 64}
      - {workload: llama2-7b, weight_dtype: int8}
      - {workload: mixtral-8x7b, routing: "zipf:1.2", seed: 3}   # or routing_file: trace.csv
    grid:                         # every combination of these lists
      memory.l2.capacity: ["50 MiB", "256 MiB", "1 GiB"]   # a hierarchy path (--set)
      runtime.kernels.launch: ["2 us", "10 us"]           # a runtime path
      batch: [1, 8, 64]                                   # a run setting, as the flags
      runtime: [vllm, tensorrt-llm]
    zip:                          # lists that move together (equal lengths); or a list of groups
      memory.hbm.bandwidth: ["3.35 TB/s", "6.7 TB/s"]
      memory.hbm.latency: ["656 cycles", "600 cycles"]

The file is composed by the hierarchy files' located reader, so errors are the same one line:
"<file>:<line>: <key>: <value> ...; expected <what>". Whether a grid value is a valid
override is checked by applying it (memwall/sweep.py), with `Value.where` as its origin.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from sim.errors import MemwallError, cut
from sim.opgraph import DTYPES
from sim.yamlfile import (  # the located reader and its one-value checks
    FileError,
    Node,
    as_choice,
    as_integer,
    as_mapping,
    as_text,
    compose,
    value_error,
)

from .inputs import DEFAULTS, ENGINES

_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
#: run settings a grid or zip may sweep, beside override paths, and what each value must be
SETTINGS: dict[str, str] = {
    "batch": "an integer >= 1", "prompt_len": "an integer >= 1", "gen_len": "an integer >= 0",
    "tp": "an integer >= 1", "weight_dtype": f"one of {', '.join(DTYPES)}",
    "act_dtype": f"one of {', '.join(DTYPES)}", "kv_dtype": f"one of {', '.join(DTYPES)}",
    "runtime": "a runtime such as tensorrt-llm",
}
#: settings of a serving sweep (a `serve:` section) a grid or zip may sweep too
SERVE_SETTINGS: dict[str, str] = {
    "rate": "requests per second such as 8, or inf", "seed": "an integer >= 0",
    "scheduler": "one of continuous, chunked, static", "preempt": "one of recompute, swap",
    "max_seqs": "an integer >= 1", "max_batched_tokens": "an integer >= 1",
    "chunked_prefill": "an integer >= 1", "kv_block": "an integer >= 1",
}
_WHOLE = "an integer >= 1 such as 16"
_SERVE = {  # the serve: section; values are checked by memwall.serving.settings.serve_spec
    "requests": (False, "an integer >= 1 such as 200"),
    "rate": (False, "requests per second such as 8, or inf"),
    "seed": (False, "an integer >= 0 such as 0"),
    "prompt_len": (False, "a length such as 512, uniform:128:2048 or lognormal:500:0.8"),
    "gen_len": (False, "a length such as 256, uniform:16:512 or lognormal:200:1"),
    "requests_file": (False, "a CSV of requests (relative to the sweep file)"),
    "scheduler": (False, "one of continuous, chunked, static"),
    "chunked_prefill": (False, _WHOLE), "max_seqs": (False, _WHOLE),
    "max_batched_tokens": (False, _WHOLE), "kv_block": (False, _WHOLE),
    "preempt": (False, "one of recompute, swap"),
    "slo_ttft": (False, "seconds such as 0.5"), "slo_tpot": (False, "seconds such as 0.05"),
}
_INT = "an integer >= {low} such as {eg}"
_TOP = {
    "base": (True, "a hierarchy file such as hbm_accel.yaml"),
    "description": (False, "a line of text"),
    "engine": (False, f"one of {', '.join(ENGINES)}"),
    "runtime": (False, "a runtime such as tensorrt-llm (default: the base hierarchy's)"),
    "prefetch_depth": (False, "an integer >= 0 such as 1"),
    "workloads": (True, "a list of workloads such as [{workload: gpt2, gen_len: 64}]"),
    "grid": (False, 'a mapping from override path to a list, {memory.l2.capacity: ["50 MiB"]}'),
    "zip": (False, "a mapping from override path to a list, all lists of one length"),
    "serve": (False, "serving settings such as {requests: 200, rate: 8, prompt_len: 512}: "
                     "each point is then a memwall serve run"),
    "objectives": (False, "a list of energy objectives for the front, from energy_j, "
                   "joules_per_token and edp"),
}
#: energy objectives a sweep may add to its front (each less is better; sweep_results.ENERGY)
OBJECTIVES = ("energy_j", "joules_per_token", "edp")
_WORKLOAD = {
    "workload": (True, "a preset such as gpt2 or a path to a Hugging Face config.json"),
    "prompt_len": (False, _INT.format(low=1, eg=128)),
    "gen_len": (False, _INT.format(low=0, eg=128)),
    "batch": (False, _INT.format(low=1, eg=1)),
    "weight_dtype": (False, f"one of {', '.join(DTYPES)}"),
    "act_dtype": (False, f"one of {', '.join(DTYPES)}"),
    "kv_dtype": (False, f"one of {', '.join(DTYPES)}"),
    "tp": (False, _INT.format(low=1, eg=1)),
    "routing": (False, "uniform or zipf:S such as zipf:1.2"),
    "routing_file": (False, "a routing trace CSV (relative to the sweep file)"),
    "seed": (False, _INT.format(low=0, eg=0)),
}
_MAX_INT = 1 << 31
MAX_POINTS = 100_000  # a sweep file's points; each is a simulation of 0.01 s to minutes


class SweepError(MemwallError):
    """A sweep file that cannot be used; the message is one line naming file, line and key."""


@dataclass(frozen=True, slots=True)
class Value:
    """One swept value, exactly as written ("256 MiB"), and where it was written."""

    text: str
    where: str  # "sweeps/x.yaml:7"

    def setting(self, path: str, whole: bool, expected: str) -> int | str:
        """The value of run setting `path` as the library takes it: an int if `whole`,
        else its text (checked where it is used)."""
        if not whole:
            return self.text
        try:
            return int(self.text)
        except ValueError:
            raise SweepError(f"{self.where}: {path}: {cut(self.text)!r} is not an integer; "
                             f"expected {expected}") from None


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept override path (or run setting) and its values, in file order."""

    path: str  # dotted override path, "memory.l2.capacity", or a run setting, "batch"
    values: tuple[Value, ...]
    where: str

    @property
    def is_setting(self) -> bool:
        """A run setting (batch, runtime, rate, ...) rather than a hierarchy or runtime
        override."""
        return self.path in SETTINGS or self.path in SERVE_SETTINGS


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    """One workload of the sweep; run parameters as the command line takes them, with its
    defaults (memwall.inputs.DEFAULTS)."""

    workload: str
    prompt_len: int = DEFAULTS["prompt_len"]  # tokens
    gen_len: int | None = DEFAULTS["gen_len"]  # tokens; None: 128 for decoders, 0 for encoders
    batch: int = DEFAULTS["batch"]  # sequences
    weight_dtype: str | None = DEFAULTS["weight_dtype"]  # None: the model's, else bf16
    act_dtype: str = DEFAULTS["act_dtype"]
    kv_dtype: str = DEFAULTS["kv_dtype"]
    tp: int = DEFAULTS["tp"]  # devices
    routing: str = DEFAULTS["routing"]  # mixture of experts: uniform or zipf:S
    routing_file: str | None = DEFAULTS["routing_file"]  # a trace, resolved from the sweep file
    seed: int = DEFAULTS["seed"]
    where: str = ""

    def settings(self) -> dict[str, object]:
        """The run settings, as memwall.inputs takes them."""
        return {"batch": self.batch, "prompt_len": self.prompt_len, "gen_len": self.gen_len,
                "weight_dtype": self.weight_dtype, "act_dtype": self.act_dtype,
                "kv_dtype": self.kv_dtype, "tp": self.tp, "routing": self.routing,
                "routing_file": self.routing_file, "seed": self.seed}


@dataclass(frozen=True, slots=True)
class SweepFile:
    """A validated sweep: points are workloads x combinations()."""

    path: str
    base: str
    base_where: str
    workloads: tuple[WorkloadEntry, ...]
    grid: tuple[Axis, ...] = ()
    zips: tuple[tuple[Axis, ...], ...] = ()  # groups of axes that move together
    engine: str = "des"
    prefetch_depth: int | None = None  # ops; None: the runtime's
    description: str = ""
    runtime: str | None = None  # None: the base hierarchy's
    serve: dict[str, object] | None = None  # serving settings: each point a serving run
    serve_where: str = ""
    objectives: tuple[str, ...] = ()  # energy objectives added to the front (OBJECTIVES)
    objectives_where: str = ""

    @property
    def axes(self) -> tuple[Axis, ...]:
        """Every swept axis: grid axes, then zip axes, in file order."""
        return self.grid + tuple(a for group in self.zips for a in group)

    @property
    def swept_paths(self) -> tuple[str, ...]:
        return tuple(a.path for a in self.axes)

    def combinations(self) -> list[tuple[Value, ...]]:
        """Every hierarchy design: one Value per axis (ordered as `axes`), grid-major order."""
        factors: list[list[tuple[Value, ...]]] = [[(v,) for v in a.values] for a in self.grid]
        factors += [list(zip(*(a.values for a in group), strict=True)) for group in self.zips]
        return [tuple(v for part in combo for v in part) for combo in itertools.product(*factors)]


def read_sweep(path: str | Path) -> SweepFile:
    """Read and validate a sweep file (the only function here that touches the disk)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SweepError(f"{path}: cannot read sweep file: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SweepError(f"{path}:{line}: not UTF-8 text") from None
    return parse_sweep(text, str(path))


def parse_sweep(text: str, path: str) -> SweepFile:
    """Validate sweep-file text; `path` only names the file in errors."""
    try:
        return _parse(text, path)
    except FileError as e:  # raised by the shared one-value checks: same message
        raise SweepError(str(e)) from None


def _parse(text: str, path: str) -> SweepFile:
    root = compose(text, lambda line: f"{path}:{line}", "")
    if root is None or root.value is None:
        raise SweepError(f"{path}:1: empty file; expected a sweep with base, workloads and grid")
    top = as_mapping(root, "", _TOP)
    depth = top.get("prefetch_depth")
    grid = _axes(top["grid"], "grid") if "grid" in top else ()
    zips = _zips(top["zip"]) if "zip" in top else ()
    entries = _workloads(top["workloads"], path)
    points = len(entries) * math.prod(
        [len(a.values) for a in grid] + [len(g[0].values) for g in zips if g])
    if points > MAX_POINTS:
        raise SweepError(f"{path}:1: {points:,} points (workloads x grid x zip); expected at "
                         f"most {MAX_POINTS:,}: split the sweep into several files")
    serve, serve_where = None, ""
    if "serve" in top:
        serve, serve_where = _serve(top["serve"], path), top["serve"].where
        defaults = {f.name: f.default for f in dataclasses.fields(WorkloadEntry)}
        for e in entries:
            given = [k for k in ("batch", "prompt_len", "gen_len", "routing", "routing_file")
                     if getattr(e, k) != defaults[k]]
            if given:
                raise SweepError(f"{e.where}: {given[0]}: set in a workload of a serving sweep; "
                                 "expected the requests' lengths in serve: (prompt_len, gen_len)")
    seen: dict[str, str] = {}
    for axis in grid + tuple(a for g in zips for a in g):
        if axis.path in SERVE_SETTINGS and axis.path not in SETTINGS and serve is None:
            raise SweepError(f"{axis.where}: {axis.path}: a serving setting; expected a serve: "
                             "section (serving settings such as {requests: 200, rate: 8})")
        if axis.path in seen:
            raise SweepError(f"{axis.where}: {axis.path}: swept twice (first at "
                             f"{seen[axis.path]}); expected each path once in grid and zip")
        seen[axis.path] = axis.where
    return SweepFile(
        path=path,
        base=as_text(top["base"], "base", _TOP["base"][1]),
        base_where=top["base"].where,
        workloads=entries,
        grid=grid,
        zips=zips,
        engine=as_choice(top.get("engine"), "engine", ENGINES, default=DEFAULTS["engine"]),
        prefetch_depth=None if depth is None else as_integer(depth, "prefetch_depth", 0, 1024,
                                                           _TOP["prefetch_depth"][1]),
        description=as_text(top["description"], "description", "text")
        if "description" in top else "",
        runtime=as_text(top["runtime"], "runtime", _TOP["runtime"][1])
        if "runtime" in top else None,
        serve=serve,
        serve_where=serve_where,
        objectives=_objectives(top["objectives"]) if "objectives" in top else (),
        objectives_where=top["objectives"].where if "objectives" in top else "",
    )


def _serve(node: Node, path: str) -> dict[str, object]:
    """The serve: section as serve() keywords (single values; their checks are serve's)."""
    f = as_mapping(node, "serve", _SERVE)
    out: dict[str, object] = {}
    for key, child in f.items():
        v = child.value
        if isinstance(v, (dict, list)) or isinstance(v, bool):
            raise value_error(child, f"serve.{key}", f"is not a single value; expected "
                              f"{_SERVE[key][1]}")
        out[key] = v
    if "requests_file" in out:
        out["requests_file"] = str(Path(path).parent / str(out["requests_file"]))
    return out


def _objectives(node: Node) -> tuple[str, ...]:
    items = node.value if isinstance(node.value, list) else [node]
    out = []
    for item in items:
        name = as_choice(item, "objectives", OBJECTIVES, default="")
        if name in out:
            raise SweepError(f"{item.where}: objectives: {name} named twice; expected each once")
        out.append(name)
    return tuple(out)


def _workloads(node: Node, path: str) -> tuple[WorkloadEntry, ...]:
    if not isinstance(node.value, list) or not node.value:
        raise value_error(node, "workloads",
                          f"is not a non-empty list; expected {_TOP['workloads'][1]}")
    out = []
    for i, item in enumerate(node.value):
        label = f"workloads[{i}]"
        if isinstance(item.value, str):  # a bare preset name
            out.append(WorkloadEntry(as_text(item, label, _WORKLOAD["workload"][1]),
                                     where=item.where))
            continue
        f = as_mapping(item, label, _WORKLOAD)
        ints = {k: as_integer(f[k], f"{label}.{k}", low, _MAX_INT, _WORKLOAD[k][1])
                for k, low in (("prompt_len", 1), ("gen_len", 0), ("batch", 1), ("tp", 1),
                               ("seed", 0))
                if k in f}
        dtypes = {k: as_choice(f[k], f"{label}.{k}", DTYPES, default=None)
                  for k in ("weight_dtype", "act_dtype", "kv_dtype") if k in f}
        texts: dict[str, str] = {k: as_text(f[k], f"{label}.{k}", _WORKLOAD[k][1])
                                 for k in ("routing", "routing_file") if k in f}
        if "routing_file" in texts:
            texts["routing_file"] = str(Path(path).parent / texts["routing_file"])
        out.append(WorkloadEntry(as_text(f["workload"], f"{label}.workload",
                                       _WORKLOAD["workload"][1]),
                                 **ints, **dtypes, **texts, where=item.where))
    return tuple(out)


def _axes(node: Node, section: str) -> tuple[Axis, ...]:
    if not isinstance(node.value, dict):
        raise value_error(node, section, f"is not a mapping; expected {_TOP[section][1]}")
    axes = []
    for path, child in node.value.items():
        key = f"{section}.{path}"
        if not _PATH.fullmatch(path) and path not in SETTINGS and path not in SERVE_SETTINGS:
            raise SweepError(f"{child.key_where}: {key}: not an override path or a run setting; "
                             "expected a dotted path such as memory.l2.capacity or one of "
                             f"{', '.join({**SETTINGS, **SERVE_SETTINGS})}")
        if not isinstance(child.value, list) or not child.value:
            raise value_error(child, key, "is not a non-empty list; expected values such as "
                         '["50 MiB", "256 MiB"]')
        values = []
        for item in child.value:
            v = item.value
            if isinstance(v, (dict, list)) or v is None or isinstance(v, bool):
                raise value_error(item, key, "is not a single value; expected a value as the "
                             'hierarchy file takes it, such as "256 MiB" or 0.9')
            values.append(Value(str(v), item.where))
        axes.append(Axis(path, tuple(values), child.key_where))
    return tuple(axes)


def _zips(node: Node) -> tuple[tuple[Axis, ...], ...]:
    groups = node.value if isinstance(node.value, list) else [node]
    out = []
    for group in groups:
        axes = _axes(group, "zip")
        lengths = {len(a.values) for a in axes}
        if len(lengths) > 1:
            first = axes[0]
            odd = next(a for a in axes if len(a.values) != len(first.values))
            raise SweepError(f"{odd.where}: zip.{odd.path}: a list of {len(odd.values)} values; "
                             f"expected {len(first.values)} like zip.{first.path} (zipped lists "
                             "move together)")
        out.append(axes)
    return tuple(out)
