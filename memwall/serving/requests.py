"""The requests a serving run answers: when each arrives and how long its prompt and output
are, drawn (Poisson arrivals, fixed or distributed lengths, an explicit seed) or read from a
file.

Lengths (`--prompt-len`, `--gen-len`, as `Lengths.parse` reads them):
    512                 every request the same
    uniform:LOW:HIGH    integers drawn uniformly from LOW to HIGH, both included
    lognormal:MEAN:SIGMA  exp(N(mu, SIGMA^2)) rounded, at least 1, with mu = ln MEAN - SIGMA^2 / 2
                        so that the mean is MEAN (request lengths of production traces are
                        close to lognormal: Splitwise, Patel et al. 2024, Fig. 3)
Arrivals: `--rate R` requests/s, exponential gaps (a Poisson process) from one
numpy Generator seeded `--seed` (gaps first, then prompts, then outputs: the same seed gives the
same requests whatever else changes); `inf` sends every request at time 0.

A requests file is CSV with a header and one request per row: `arrival_s,prompt_tokens,
output_tokens` (seconds from the start, tokens), or the columns of the Azure LLM inference
traces (Patel et al. 2024, github.com/Azure/AzurePublicDataset: `TIMESTAMP` (a date and time,
or seconds), `ContextTokens`, `GeneratedTokens`), whose first timestamp becomes time 0. Other
columns are ignored; rows are served in arrival order.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from sim.errors import MemwallError, cut

#: Column names of a requests file: ours, then the Azure LLM inference trace's.
COLUMNS = {"arrival": ("arrival_s", "TIMESTAMP"), "prompt": ("prompt_tokens", "ContextTokens"),
           "output": ("output_tokens", "GeneratedTokens")}
KINDS = ("uniform", "lognormal")


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request: its arrival and its lengths."""

    id: int  # 0, 1, ... in arrival order
    arrival_s: float
    prompt_tokens: int
    output_tokens: int  # tokens it generates (>= 1: the first comes from its prefill)


@dataclass(frozen=True, slots=True)
class Lengths:
    """A length distribution: a fixed value, uniform integers, or lognormal."""

    kind: str  # "fixed" | "uniform" | "lognormal"
    a: float  # the value; LOW; MEAN
    b: float = 0.0  # HIGH; SIGMA

    @classmethod
    def parse(cls, text: str | int, flag: str) -> Lengths:
        """`text` as `flag` takes it (see the module docstring); one-line errors name both.

        >>> Lengths.parse("uniform:128:2048", "--prompt-len")
        Lengths(kind='uniform', a=128.0, b=2048.0)
        """
        if isinstance(text, bool):
            raise MemwallError(f"{flag} {text!r}: expected a token count or uniform:LOW:HIGH "
                               "or lognormal:MEAN:SIGMA")
        if isinstance(text, int):
            text = str(text)
        parts = str(text).strip().split(":")
        expected = ("expected a token count >= 1, uniform:LOW:HIGH (whole numbers, 1 <= LOW <= "
                    "HIGH) or lognormal:MEAN:SIGMA (MEAN >= 1, SIGMA >= 0)")
        try:
            if len(parts) == 1 and int(parts[0]) >= 1:
                return cls("fixed", float(int(parts[0])))
            if len(parts) == 3 and parts[0] == "uniform":
                lo, hi = int(parts[1]), int(parts[2])
                if 1 <= lo <= hi:
                    return cls("uniform", float(lo), float(hi))
            if len(parts) == 3 and parts[0] == "lognormal":
                mean, sigma = float(parts[1]), float(parts[2])
                if math.isfinite(mean) and math.isfinite(sigma) and mean >= 1 and sigma >= 0:
                    return cls("lognormal", mean, sigma)
        except ValueError:
            pass
        raise MemwallError(f"{flag} {cut(str(text))}: {expected}")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (int64, each >= 1)."""
        if self.kind == "fixed":
            return np.full(n, int(self.a), np.int64)
        if self.kind == "uniform":
            return rng.integers(int(self.a), int(self.b), size=n, endpoint=True).astype(np.int64)
        mu = math.log(self.a) - self.b ** 2 / 2
        return np.maximum(1, np.rint(rng.lognormal(mu, self.b, size=n))).astype(np.int64)

    @property
    def label(self) -> str:
        if self.kind == "fixed":
            return str(int(self.a))
        if self.kind == "uniform":
            return f"uniform:{int(self.a)}:{int(self.b)}"
        return f"lognormal:{self.a:g}:{self.b:g}"


def parse_rate(rate: float | str, flag: str = "--rate") -> float:
    """Requests per second: a number > 0, or inf (every request at time 0)."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        r = math.nan
    if isinstance(rate, bool) or not r > 0:
        raise MemwallError(f"{flag} {cut(str(rate))}: expected requests per second > 0 (or inf)")
    return r


def poisson(n: int, rate: float, prompt: Lengths, output: Lengths, seed: int) -> list[Arrival]:
    """n requests arriving as a Poisson process of `rate` requests/s from time 0.

    >>> [(a.id, round(a.arrival_s, 3), a.prompt_tokens) for a in poisson(
    ...     2, 10.0, Lengths("fixed", 8), Lengths("fixed", 4), 0)]
    [(0, 0.068, 8), (1, 0.17, 8)]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MemwallError(f"--requests {n!r}: expected a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MemwallError(f"--seed {seed!r}: expected an integer >= 0")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=n) if math.isfinite(rate) else np.zeros(n)
    times = np.cumsum(gaps)
    p, o = prompt.draw(rng, n), output.draw(rng, n)
    return [Arrival(i, float(t), int(a), int(b))
            for i, (t, a, b) in enumerate(zip(times, p, o, strict=True))]


def read_requests(path: str | Path) -> list[Arrival]:
    """The requests of a CSV file (see the module docstring), in arrival order."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise MemwallError(f"--requests-file {path}: cannot read it: {err.strerror}") from None
    except UnicodeDecodeError:
        raise MemwallError(f"--requests-file {path}: not UTF-8 text; expected CSV") from None
    return parse_requests(text, str(path))


def parse_requests(text: str, name: str) -> list[Arrival]:
    """The requests of CSV `text` (from file `name`, for messages)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise MemwallError(f"{name}: empty; expected a header naming {_wanted()}")
    header = [h.strip() for h in header]
    at: dict[str, int] = {}
    for key, names in COLUMNS.items():
        for cand in names:
            if cand in header:
                at[key] = header.index(cand)
                break
        else:
            raise MemwallError(f"{name}, line 1: no column {' or '.join(names)}; the header has "
                               f"{cut(', '.join(header))}")
    rows: list[tuple[float, int, int, int]] = []
    t0: datetime | None = None
    for line, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise MemwallError(f"{name}, line {line}: {len(row)} fields; expected {len(header)}")
        t_text = row[at["arrival"]].strip()
        t = _seconds(t_text)
        if t is None:
            stamp = _timestamp(t_text)
            if stamp is None:
                raise MemwallError(f"{name}, line {line}: {header[at['arrival']]} = "
                                   f"{cut(t_text)}: expected seconds >= 0 or a date and time")
            t0 = t0 or stamp
            t = (stamp - t0).total_seconds()
        if not (math.isfinite(t) and t >= 0):
            raise MemwallError(f"{name}, line {line}: {header[at['arrival']]} = {cut(t_text)}: "
                               "expected a time >= 0 (and not before the first row's)")
        tokens = []
        for key in ("prompt", "output"):
            v = row[at[key]].strip()
            try:
                n = int(v)
            except ValueError:
                n = 0
            if n < 1:
                raise MemwallError(f"{name}, line {line}: {header[at[key]]} = {cut(v)}: expected "
                                   "a whole number of tokens >= 1")
            tokens.append(n)
        rows.append((t, line, tokens[0], tokens[1]))
    if not rows:
        raise MemwallError(f"{name}: no requests; expected one row per request after the header")
    rows.sort()
    return [Arrival(i, t, p, o) for i, (t, _, p, o) in enumerate(rows)]


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _timestamp(text: str) -> datetime | None:
    """A date and time as the Azure traces write it ('2023-11-16 18:15:46.6805900': up to 7
    fractional digits, which datetime does not take beyond 6)."""
    base, dot, frac = text.partition(".")
    try:
        stamp = datetime.fromisoformat(base)
    except ValueError:
        return None
    if dot:
        if not frac.isdigit():
            return None
        stamp += timedelta(seconds=float("0." + frac))
    return stamp.replace(tzinfo=None)


def _wanted() -> str:
    return "; ".join(" or ".join(names) for names in COLUMNS.values())


def lengths_label(arrivals: Sequence[Arrival]) -> str:
    """'n requests, prompt MIN-MAX, output MIN-MAX tokens' for reports."""
    p = [a.prompt_tokens for a in arrivals]
    o = [a.output_tokens for a in arrivals]
    return (f"{len(arrivals)} requests, prompt {min(p)}-{max(p)}, output {min(o)}-{max(o)} "
            "tokens")
