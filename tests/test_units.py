from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.errors import MemwallError
from sim.units import UNITS, UnitError, format_quantity, kind_of, parse_quantity


@pytest.mark.parametrize(
    ("text", "kind", "si"),
    [
        ("50 MiB", "size", 50 * 2**20),
        ("1 kB", "size", 1000),
        ("1 KiB", "size", 1024),
        ("80 GB", "size", 80e9),
        ("2 TiB", "size", 2 * 2**40),
        ("3.35 TB/s", "bandwidth", 3.35e12),
        ("21 PB/s", "bandwidth", 21e15),
        ("1 GiB/s", "bandwidth", 2**30),
        ("100 Gb/s", "bandwidth", 12.5e9),
        ("8 Mb/s", "bandwidth", 1e6),
        ("1.6 Tb/s", "bandwidth", 0.2e12),
        ("80 ns", "time", 80e-9),
        ("4 us", "time", 4e-6),
        ("4 µs", "time", 4e-6),
        ("2 ms", "time", 2e-3),
        ("5 ps", "time", 5e-12),
        ("1830 MHz", "frequency", 1.83e9),
        ("2.8 GHz", "frequency", 2.8e9),
        ("989.4 TFLOP/s", "rate", 989.4e12),
        ("1979 TOP/s", "rate", 1979e12),
        ("125 PFLOP/s", "rate", 125e15),
        ("1e3 kB", "size", 1e6),
        ("  7GB  ", "size", 7e9),
        ("-5 GB/s", "bandwidth", -5e9),
    ],
)
def test_parses_exactly(text: str, kind: str, si: float) -> None:
    assert parse_quantity(text, kind) == pytest.approx(si, rel=1e-12)


def test_decimal_and_binary_prefixes_are_exact() -> None:
    assert parse_quantity("1 kB", "size") == 1000.0
    assert parse_quantity("1 KiB", "size") == 1024.0
    assert parse_quantity("1 MiB", "size") == 1048576.0
    assert parse_quantity("1 GB", "size") == 1e9


def test_cycles_resolve_against_the_clock() -> None:
    assert parse_quantity("650 cycles", "time", clock_hz=1.3e9) == pytest.approx(500e-9)
    with pytest.raises(UnitError, match="no clock"):
        parse_quantity("650 cycles", "time")


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("3 GHz", "bandwidth", '"3 GHz" is a frequency; expected a bandwidth such as "5.5 TB/s"'),
        ("50 MiB", "time", "is a size; expected a time"),
        ("3.35", "bandwidth", '"3.35" has no unit'),
        ("fast", "size", "is not a number with a unit"),
        ("nan GB/s", "bandwidth", "not finite"),
        ("inf GB", "size", "not finite"),
        ("3 KB", "size", "ambiguous"),
        ("3 gib", "size", 'did you mean "GiB"'),
        ("3 furlongs", "size", 'unknown unit "furlongs"'),
        ("", "size", "not a number"),
    ],
)
def test_refuses_bad_text(text: str, kind: str, fragment: str) -> None:
    with pytest.raises(UnitError) as err:
        parse_quantity(text, kind)
    assert fragment in str(err.value)
    assert isinstance(err.value, MemwallError)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown quantity kind"):
        parse_quantity("1 B", "mass")


def test_every_unit_has_one_kind() -> None:
    for kind, table in UNITS.items():
        for unit in table:
            assert kind_of(unit) == kind


@given(
    st.sampled_from([(k, u) for k, t in UNITS.items() for u in t]),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
)
def test_any_number_with_any_unit_round_trips(kind_unit: tuple[str, str], x: float) -> None:
    kind, unit = kind_unit
    assert parse_quantity(f"{x!r} {unit}", kind) == x * UNITS[kind][unit]


@given(
    st.sampled_from(list(UNITS)),
    st.floats(min_value=1e-12, max_value=1e18, allow_nan=False),
)
def test_format_quantity_parses_back(kind: str, value: float) -> None:
    text = format_quantity(value, kind)
    assert math.isclose(parse_quantity(text, kind), value, rel_tol=1e-3)


@given(st.text(max_size=30), st.sampled_from(list(UNITS)))
def test_arbitrary_text_gives_a_float_or_unit_error(text: str, kind: str) -> None:
    try:
        value = parse_quantity(text, kind, clock_hz=1e9)
    except UnitError:
        return
    assert math.isfinite(value)
