"""Located YAML: input files composed (never constructed) into trees of values that remember
their file and line, and the one-value checks whose errors name them.

Every error is one line: "<where>: <key path>: <value> <what is wrong>; expected <what>".
Hierarchy files and sweep files are both read this way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from sim.errors import SHOWN_CHARS, MemwallError, cut
from sim.units import UnitError, expected, format_quantity, parse_quantity


class FileError(MemwallError):
    """An input file (or override) that cannot be used; the message is one line."""


@dataclass
class Node:
    """One value of the raw tree with the place it came from."""

    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    where: str  # "path/x.yaml:14" or "--set PATH=VALUE"
    key_where: str = ""  # where the key naming this value is, if any



LIMITS = {  # kind -> (smallest, largest) SI value accepted; outside is almost surely a typo
    "size": (1.0, 2.0**50),  # 1 B .. 1 PiB per device
    "bandwidth": (1.0, 1e18),  # .. 1 EB/s (Cerebras WSE-3 SRAM is 21 PB/s)
    "time": (0.0, 1.0),  # .. 1 s for a latency or a launch
    "frequency": (1e6, 1e11),  # 1 MHz .. 100 GHz
    "rate": (1e6, 1e19),  # .. 10 EFLOP/s per device
    "energy_per_byte": (0.0, 1e-6),  # .. 1 uJ/B (DRAM is ~30 pJ/B, a network hop ~1 nJ/B)
    "energy_per_flop": (0.0, 1e-9),  # .. 1 nJ/FLOP (45 nm fp32 FMA is ~4 pJ)
    "power": (0.0, 1e5),  # .. 100 kW per device
    "power_per_size": (0.0, 1.0 / 2**20),  # .. 1 W/MiB of SRAM leakage
}
_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}
FRACTION = "a fraction in (0, 1] such as 0.85"
MAX_DEPTH = 32  # nested mappings and lists; a hierarchy file needs 4


def compose(text: str, locate: Callable[[int], str], path: str) -> Node | None:
    """Compose YAML (no Python objects are ever constructed) into a located Node tree.

    The text is first read as a stream of events (no recursion), so that nesting deeper
    than MAX_DEPTH and aliases are refused at their own line before anything is built."""
    try:
        _prescan(text, locate, path)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        raise FileError(_syntax(e, locate)) from None
    except yaml.YAMLError as e:
        line = text[: getattr(e, "position", 0)].count("\n") + 1
        raise FileError(f"{locate(line)}: YAML error: {str(e).splitlines()[0]}") from None
    return None if root is None else _node(root, locate, path, set())


def _syntax(e: yaml.MarkedYAMLError, locate: Callable[[int], str]) -> str:
    """One line for a YAML syntax error, at the line that explains it: where an unclosed
    quote or bracket opened, else where the parser stopped."""
    opened = e.context_mark is not None and (e.context or "").startswith("while scanning")
    mark = e.context_mark if opened else (e.problem_mark or e.context_mark)
    line = mark.line + 1 if mark is not None else 1
    problem = e.problem or e.context or "invalid YAML"
    if opened:
        problem = f"{problem} ({e.context} that starts here)"
    return f"{locate(line)}: YAML syntax error: {problem}"


def _prescan(text: str, locate: Callable[[int], str], path: str) -> None:
    """Walk the event stream keeping the key path, so that an alias or nesting deeper than
    MAX_DEPTH is refused at its own line with its key."""
    stack: list[list] = []  # per open container: [is_mapping, key or index, expecting a key]

    def here() -> str:
        keys = [str(k) for is_map, k, _ in stack if is_map and k is not None]
        inner = ".".join(keys)
        return cut(join(path, inner) if inner else path, 2 * SHOWN_CHARS) or "top level"

    def consumed() -> None:  # a value (scalar, alias or container) ended in the innermost
        if stack:
            top = stack[-1]
            if top[0]:
                top[2] = True
            else:
                top[1] += 1

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.ScalarEvent) and stack and stack[-1][0] and stack[-1][2]:
            stack[-1][1], stack[-1][2] = event.value, False  # a key
        elif isinstance(event, yaml.AliasEvent):
            raise FileError(f"{locate(line)}: {here()}: YAML aliases (*name) are not "
                            "supported; write the value out")
        elif isinstance(event, yaml.ScalarEvent):
            consumed()
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= MAX_DEPTH:
                raise FileError(f"{locate(line)}: {here()}: nested deeper than {MAX_DEPTH} "
                                "levels; expected a shallow file of mappings, lists, strings "
                                "and numbers")
            is_map = isinstance(event, yaml.MappingStartEvent)
            stack.append([is_map, None if is_map else 0, True])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            consumed()


def _node(n: yaml.Node, locate: Callable[[int], str], path: str, seen: set[int]) -> Node:
    where = locate(n.start_mark.line + 1)
    at = f"{where}: {path}:" if path else f"{where}:"
    if id(n) in seen:
        raise FileError(f"{at} YAML aliases (*name) are not supported; write the value out")
    seen.add(id(n))
    if isinstance(n, yaml.MappingNode) and n.tag == _YAML + "map":
        out: dict[str, Node] = {}
        for k, v in n.value:
            kw = locate(k.start_mark.line + 1)
            if not (isinstance(k, yaml.ScalarNode) and k.tag == _YAML + "str"):
                shown = k.value if isinstance(k, yaml.ScalarNode) else k.tag
                raise FileError(f"{kw}: {path or 'top level'}: key {shown!s} is not a plain "
                                     "name; expected a key such as capacity")
            if id(v) in seen:
                raise FileError(f"{kw}: {join(path, k.value)}: YAML aliases (*name) are "
                                     "not supported; write the value out")
            if k.value in out:
                raise FileError(f'{kw}: {join(path, k.value)}: duplicate key "{k.value}" '
                                     f"(first at {out[k.value].key_where}); expected each once")
            out[k.value] = _node(v, locate, join(path, k.value), seen)
            out[k.value].key_where = kw
        return Node(out, where)
    if isinstance(n, yaml.SequenceNode) and n.tag == _YAML + "seq":
        return Node([_node(v, locate, _item(path, i, v), seen) for i, v in enumerate(n.value)],
                    where)
    if isinstance(n, yaml.ScalarNode) and n.tag in _SCALAR_TAGS:
        try:
            value = n.value if n.tag == _YAML + "str" else SafeConstructor().construct_object(n)
        except ValueError:  # an integer of more than 4,300 digits (CPython's limit)
            raise FileError(f"{at} a number of {len(n.value)} characters, too long to read; "
                            "expected a value such as 0.85 or \"50 MiB\"") from None
        return Node(value, where)
    raise FileError(f'{at} YAML tag "{n.tag}" is not allowed; expected plain mappings, '
                         "lists, strings and numbers (nothing is ever constructed)")


def _item(path: str, i: int, v: yaml.Node) -> str:
    if isinstance(v, yaml.MappingNode):
        for k, name in v.value:
            if getattr(k, "value", None) == "name" and isinstance(name, yaml.ScalarNode):
                return join(path, name.value)
    return f"{path}[{i}]"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- one value at a time, each error naming file:line, key path, value and what was expected


def shown(node: Node) -> str:
    v = node.value
    if isinstance(v, str):
        return f'"{cut(v)}"'
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return "empty" if v is None else str(v).lower() if isinstance(v, bool) else cut(repr(v))





def value_error(node: Node, path: str, detail: str) -> FileError:
    return FileError(f"{node.where}: {path}: {shown(node)} {detail}")


def as_mapping(node: Node, path: str, spec: dict[str, tuple[bool, str]],
            what: str = "key") -> dict[str, Node]:
    """The keys of a mapping, after refusing unknown, missing and empty ones (an empty
    `efficiency:` is a mistake, never the default)."""
    if not isinstance(node.value, dict):
        keys = ", ".join(spec)
        at = f"{node.where}: {path}:" if path else f"{node.where}:"
        raise FileError(f"{at} {shown(node)} is not a mapping; expected keys from {keys}")
    for key, child in node.value.items():
        if key not in spec:
            close = difflib.get_close_matches(key, spec, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise FileError(f"{child.key_where}: {join(path, key)}: unknown {what}; {hint}"
                                 f"expected one of {', '.join(spec)}")
    for key, (required, wanted) in spec.items():
        if required and key not in node.value:
            raise FileError(f"{node.where}: {join(path, key)}: missing required key; "
                            f"expected {wanted}")
        if key in node.value and node.value[key].value is None:
            raise FileError(f"{node.value[key].where}: {join(path, key)}: empty; expected "
                            f"{wanted}")
    return dict(node.value)


def as_quantity(node: Node, path: str, kind: str, *, clock_hz: float | None = None) -> float:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise value_error(node, path, f"is not a quantity; expected {expected(kind)}")
    try:
        value = parse_quantity(str(v), kind, clock_hz=clock_hz)
    except UnitError as e:
        raise FileError(f"{node.where}: {path}: {e}") from None
    low, high = LIMITS[kind]
    if value < 0 or (value == 0 and low > 0):
        sign = "negative" if value < 0 else "zero"
        raise value_error(node, path, f"is {sign}; expected a positive {expected(kind)[2:]}")
    if value > high or 0 < value < low:
        side, bound = ("larger", high) if value > high else ("smaller", low)
        raise value_error(node, path, f"is {side} than {format_quantity(bound, kind)}, surely a "
                          f"typo; expected {expected(kind)}")
    return value


def as_fraction(node: Node | None, path: str) -> float:
    if node is None:
        return 1.0
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise value_error(node, path, f"is not a fraction; expected {FRACTION}")
    return float(v)


def as_integer(node: Node | None, path: str, low: int, high: int, wanted: str,
             default: int | None = None) -> int:
    if node is None and default is not None:
        return default
    if node is None:
        raise FileError(f"{path}: missing; expected {wanted}")
    if isinstance(node.value, bool) or not isinstance(node.value, int):
        raise value_error(node, path, f"is not an integer; expected {wanted}")
    if not low <= node.value <= high:
        raise value_error(node, path, f"is out of range; expected {wanted}")
    return node.value


def as_text(node: Node, path: str, wanted: str, pattern: re.Pattern[str] | None = None) -> str:
    v = node.value
    if not isinstance(v, str) or not v.strip() or (pattern and not pattern.fullmatch(v)):
        raise value_error(node, path, f"is not valid; expected {wanted}")
    return v


def as_choice(node: Node | None, path: str, options: tuple[str, ...], default: str) -> Any:
    if node is None:
        return default
    if not isinstance(node.value, str) or node.value not in options:
        close = difflib.get_close_matches(str(node.value), options, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise value_error(node, path, f"is not known; {hint}expected one of {', '.join(options)}")
    return node.value
