"""The one unit parser of the project: "3.35 TB/s", "50 MiB", "650 cycles" -> SI floats.

Kinds and their SI results: size (bytes), bandwidth (bytes/s), time (s), frequency (Hz),
rate (FLOP/s or OP/s), and for energy: energy_per_byte (J/B; "pJ/bit" is 8 x "pJ/B"),
energy_per_flop (J/FLOP), power (W) and power_per_size (W/B: SRAM leakage as "mW/MiB").
Decimal prefixes are powers of 1000 and binary ones powers of 1024, exactly; bit rates (Gb/s)
are divided by 8. Units are case-sensitive ("Mb/s" is not "MB/s").
"""

from __future__ import annotations

import math
import re

from sim.errors import MemwallError, cut

_DECIMAL = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SIZES = {f"{p}B": f for p, f in (_DECIMAL | _BINARY).items()}
_SMALL = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0}
_WATTS = {"u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3}

#: unit -> SI factor, per kind. "cycles" is resolved against a clock, not a factor.
UNITS: dict[str, dict[str, float]] = {
    "size": _SIZES,
    "bandwidth": {f"{u}/s": f for u, f in _SIZES.items()}
    | {f"{p}b/s": f / 8 for p, f in _DECIMAL.items()},  # bit rates
    "time": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9, "ps": 1e-12},
    "frequency": {f"{p}Hz": f for p, f in _DECIMAL.items() if p in ("", "k", "M", "G")},
    "rate": {f"{p}{op}{s}": f for p, f in _DECIMAL.items() for op in ("FLOP", "OP")
             for s in ("/s", "S")},
    "energy_per_byte": {f"{p}J/B": f for p, f in _SMALL.items()}
    | {f"{p}J/bit": 8 * f for p, f in _SMALL.items()},
    "energy_per_flop": {f"{p}J/{op}": f for p, f in _SMALL.items() for op in ("FLOP", "OP")},
    "power": {f"{p}W": f for p, f in _WATTS.items()},
    "power_per_size": {f"{p}W/{u}": f / b for p, f in _WATTS.items() if p != "k"
                       for u, b in _SIZES.items() if u != "B"},
}
CYCLES = ("cycles", "cycle")

#: what a well-formed value of each kind looks like, for messages
EXAMPLES: dict[str, str] = {
    "size": "50 MiB",
    "bandwidth": "5.5 TB/s",
    "time": "80 ns",
    "frequency": "1.83 GHz",
    "rate": "989.4 TFLOP/s",
    "energy_per_byte": "3.9 pJ/bit",
    "energy_per_flop": "0.4 pJ/FLOP",
    "power": "60 W",
    "power_per_size": "1.5 mW/MiB",
}
_ARTICLE = {"size": "a size", "bandwidth": "a bandwidth", "time": "a time",
            "frequency": "a frequency", "rate": "a rate",
            "energy_per_byte": "an energy per byte", "energy_per_flop": "an energy per FLOP",
            "power": "a power", "power_per_size": "a power per capacity"}

_NUMBER = r"[-+]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_QUANTITY = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>\S.*?)?\s*$", re.IGNORECASE)


class UnitError(MemwallError, ValueError):
    """Not a number with a unit of the expected kind; the message carries no location."""


def expected(kind: str) -> str:
    """`a bandwidth such as "5.5 TB/s"`: the tail of every message about a value of `kind`."""
    return f'{_ARTICLE[kind]} such as "{EXAMPLES[kind]}"'


def kind_of(unit: str) -> str | None:
    """The kind a unit belongs to, or None if no kind has it."""
    if unit in CYCLES:
        return "time"
    return next((k for k, table in UNITS.items() if unit in table), None)


def parse_quantity(text: str, kind: str, *, clock_hz: float | None = None) -> float:
    """Parse `text` as a `kind` quantity and return it in SI units (a finite float, any sign)."""
    if kind not in UNITS:
        raise ValueError(f"unknown quantity kind {kind!r}; kinds are {', '.join(UNITS)}")
    shown = f'"{cut(text)}"'
    m = _QUANTITY.match(text)
    if m is None:
        raise UnitError(f"{shown} is not a number with a unit; expected {expected(kind)}")
    number = float(m["num"])
    unit = m["unit"]
    if unit is None:
        raise UnitError(f"{shown} has no unit; expected {expected(kind)}")
    if not math.isfinite(number):
        raise UnitError(f"{shown} is not finite; expected {expected(kind)}")
    if kind == "time" and unit in CYCLES:
        if clock_hz is None:
            raise UnitError(f"{shown} is in cycles but no clock is known; "
                            f"expected {expected(kind)}")
        return number / clock_hz
    factor = UNITS[kind].get(unit)
    if factor is not None:
        return number * factor
    other = kind_of(unit)
    if other is not None:
        raise UnitError(f"{shown} is {_ARTICLE[other]}; expected {expected(kind)}")
    raise UnitError(f"{shown} has unknown unit \"{unit}\"{_hint(unit, kind)}; "
                    f"expected {expected(kind)}")


def _hint(unit: str, kind: str) -> str:
    if unit == {"size": "KB", "bandwidth": "KB/s"}.get(kind):
        return (f' (ambiguous: write {unit.replace("K", "k")} for 1000 or '
                f'{unit.replace("K", "Ki")} for 1024)')
    same = [u for u in UNITS[kind] if u.lower() == unit.lower()]
    if len(same) == 1:
        return f' (did you mean "{same[0]}"? units are case-sensitive)'
    return f" (units: {', '.join(UNITS[kind])}{', cycles' if kind == 'time' else ''})"


def format_quantity(value: float, kind: str) -> str:
    """`value` (SI) in the largest decimal unit that keeps it >= 1, e.g. 3.35e12 -> "3.35 TB/s"."""
    units = {"size": "B", "bandwidth": "B/s", "time": "s", "frequency": "Hz", "rate": "FLOP/s"}
    small = {"energy_per_byte": "J/B", "energy_per_flop": "J/FLOP", "power": "W",
             "power_per_size": "W/MiB"}
    if kind == "time":
        steps = [("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("ps", 1e-12)]
    elif kind in small:
        table = UNITS[kind]
        steps = sorted(((u, table[u]) for p in _SMALL if (u := f"{p}{small[kind]}") in table
                        and p not in ("u", "µ")), key=lambda uf: -uf[1])
    else:
        base = units[kind]
        steps = [(f"{p}{base}", f) for p, f in reversed(_DECIMAL.items())
                 if f"{p}{base}" in UNITS[kind]]
    for unit, factor in steps:
        if abs(value) >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value / steps[-1][1]:.4g} {steps[-1][0]}"
