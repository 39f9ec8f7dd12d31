"""Which experts a mixture-of-experts router picks: a setting of the run, not of the model.

Per phase and MoE layer the router sends each of the phase's N tokens (batch x tokens fed:
B x prompt_len in the prefill, B in a decode step) to top_k of the n_experts experts; only the
chosen experts' weights are read. `route` gives, per MoE layer, the experts chosen at least
once (ascending ids) and how many tokens each got (summing to N x top_k).

    uniform   every token picks top_k of E uniformly, and the number of distinct experts a
              layer reads is fixed at its expectation, n = E (1 - (1 - k / E)^N), rounded to
              the nearest integer (halves up) and kept within [k, min(E, N k)]: batch 1 reads
              exactly k experts per layer, batch 64 of Mixtral's 8 all 8. Which n experts is a
              uniform draw without replacement (seeded: a cache sees no locality beyond
              chance); the N k assignments are spread evenly over them, the first ones by id
              taking one more when they do not divide.
    zipf:S    skewed: each layer ranks its experts by a seeded random permutation and a token
              picks top_k distinct experts with probability proportional to 1 / rank^S
              (successive draws without replacement, by the Gumbel top-k trick), every token
              independently; the hot experts stay the same from step to step, so a cache or a
              fast tier holding them pays off. S = 0 is uniform choice per token.
    file      a recorded trace (`parse_routing_file`): CSV with a header row
              `step,layer,token,expert,...` and one row per token of each phase and MoE
              layer: the step (0 the prefill, k the k-th decode step), the layer index, the
              token (0 .. N - 1 within the phase) and its top_k expert ids. The run must match
              it (RunSpec checks: every step and MoE layer, N tokens each, top_k ids < E).

Randomness is explicit: a numpy Generator seeded by (seed, step) per phase, so a phase's
choices are the same whether its graph is built fresh or a decode template is moved to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.errors import MemwallError

KINDS = ("uniform", "zipf", "file")
_CHUNK = 1 << 20  # Gumbel keys drawn at a time (tokens x experts), to bound memory
Route = tuple[np.ndarray, np.ndarray]  # (expert ids ascending, tokens routed to each)


class RoutingError(MemwallError):
    """A routing setting or trace that cannot be used: names the flag or file, line and value."""


@dataclass(frozen=True)
class RoutingTrace:
    """A recorded routing: step -> layer -> (tokens, top_k) expert ids."""

    path: str
    sha256: str
    steps: dict[int, dict[int, np.ndarray]] = field(compare=False, repr=False)
    top_k: int


@dataclass(frozen=True)
class Routing:
    """How routers pick experts in a run (see the module doc)."""

    kind: str = "uniform"  # one of KINDS
    skew: float = 0.0  # zipf's exponent S
    seed: int = 0  # of the random draws (uniform's set, zipf's ranks and choices)
    trace: RoutingTrace | None = None  # kind "file"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RoutingError(f"routing {self.kind!r}: expected uniform, zipf:S or a file")
        if not math.isfinite(self.skew) or self.skew < 0:
            raise RoutingError(f"routing zipf:{self.skew}: expected an exponent S >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise RoutingError(f"seed = {self.seed!r}: expected an integer >= 0")
        if (self.kind == "file") != (self.trace is not None):
            raise RoutingError("routing 'file' needs a trace (--routing-file), and only it")

    @property
    def label(self) -> str:
        """As the flag takes it: uniform, zipf:S, or file."""
        return f"zipf:{self.skew:g}" if self.kind == "zipf" else self.kind

    def route(self, step: int, tokens: int, layers: tuple[int, ...], n_experts: int,
              top_k: int) -> list[Route]:
        """The experts each MoE layer of `layers` reads in phase `step`, for `tokens` tokens."""
        if self.kind == "file":
            assert self.trace is not None
            rows = self.trace.steps[step]
            return [_count(rows[i], n_experts) for i in layers]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, step]))
        if self.kind == "uniform":
            n = expected_experts(n_experts, top_k, tokens)
            base, extra = divmod(tokens * top_k, n)
            counts = np.full(n, base, dtype=np.int64)
            counts[:extra] += 1
            return [(np.sort(rng.choice(n_experts, n, replace=False)), counts) for _ in layers]
        out = []
        for perm in self._ranks(len(layers), n_experts):  # perm[r]: the expert of rank r + 1
            logp = np.empty(n_experts)
            logp[perm] = -self.skew * np.log(np.arange(1, n_experts + 1))
            counts = np.zeros(n_experts, dtype=np.int64)
            per = max(1, _CHUNK // n_experts)
            for start in range(0, tokens, per):
                m = min(per, tokens - start)
                keys = logp + rng.gumbel(size=(m, n_experts))
                chosen = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
                counts += np.bincount(chosen.ravel(), minlength=n_experts)
            ids = np.flatnonzero(counts)
            out.append((ids, counts[ids]))
        return out


    def _ranks(self, n_layers: int, n_experts: int) -> list[np.ndarray]:
        """zipf: each MoE layer's experts by rank (a seeded permutation, the same every step)."""
        ranks = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        return [ranks.permutation(n_experts) for _ in range(n_layers)]

    def popularity(self, layers: tuple[int, ...], n_experts: int) -> list[np.ndarray]:
        """Each MoE layer's experts, the most often chosen first: zipf's ranks; for a trace,
        by the tokens it routes to each over every step (ties by id); uniform: by id."""
        if self.kind == "zipf":
            return self._ranks(len(layers), n_experts)
        if self.kind == "file":
            assert self.trace is not None
            out = []
            for layer in layers:
                counts = np.zeros(n_experts, dtype=np.int64)
                for by in self.trace.steps.values():
                    if layer in by:
                        counts += np.bincount(by[layer].ravel(), minlength=n_experts)
                out.append(np.argsort(-counts, kind="stable"))
            return out
        return [np.arange(n_experts) for _ in layers]


def expected_experts(n_experts: int, top_k: int, tokens: int) -> int:
    """Distinct experts N tokens read when each picks top_k of n_experts uniformly: the
    expectation E (1 - (1 - k / E)^N), rounded half up, within [k, min(E, N k)]."""
    x = n_experts * (1 - (1 - top_k / n_experts) ** tokens)
    return max(top_k, min(n_experts, tokens * top_k, math.floor(x + 0.5)))


def _count(ids: np.ndarray, n_experts: int) -> Route:
    counts = np.bincount(ids.ravel(), minlength=n_experts)
    chosen = np.flatnonzero(counts)
    return chosen, counts[chosen]


def parse_routing(text: str, seed: int = 0, trace: RoutingTrace | None = None) -> Routing:
    """`--routing` text (uniform, zipf:S) into a Routing; a trace makes it "file"."""
    if trace is not None:
        return Routing("file", seed=seed, trace=trace)
    if text == "uniform":
        return Routing("uniform", seed=seed)
    kind, _, s = text.partition(":")
    if kind == "zipf":
        try:
            skew = float(s)
        except ValueError:
            skew = -1.0
        if skew >= 0 and math.isfinite(skew):
            return Routing("zipf", skew, seed)
    raise RoutingError(f"routing {text!r}: expected uniform or zipf:S with an exponent S >= 0 "
                       "(e.g. zipf:1.2), or a trace with --routing-file")


def parse_routing_file(text: str, path: str, sha256: str) -> RoutingTrace:
    """A recorded routing trace from its CSV text (see the module doc); `path` names it in
    errors, which give the line."""
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    if len(header) < 4 or header[:3] != ["step", "layer", "token"]:
        raise RoutingError(f"{path}:1: header {lines[0] if lines else ''!r}: expected "
                           "step,layer,token,expert[,expert...] (one expert column per top_k)")
    k = len(header) - 3
    steps: dict[int, dict[int, list[list[int]]]] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(",")
        try:
            values = [int(c) for c in cells]
        except ValueError:
            values = []
        if len(values) != 3 + k or min(values, default=-1) < 0:
            raise RoutingError(f"{path}:{n}: {line!r}: expected {3 + k} integers >= 0 "
                               f"(step, layer, token and {k} expert ids)")
        step, layer, token, *experts = values
        if len(set(experts)) != k:
            raise RoutingError(f"{path}:{n}: experts {experts}: expected {k} distinct ids")
        rows = steps.setdefault(step, {}).setdefault(layer, [])
        if token != len(rows):
            raise RoutingError(f"{path}:{n}: token {token}: expected {len(rows)} (tokens of a "
                               "step and layer in order from 0)")
        rows.append(experts)
    if not steps:
        raise RoutingError(f"{path}: no rows: expected one per token of each step and layer")
    return RoutingTrace(path, sha256, {s: {layer: np.array(r, dtype=np.int64)
                                           for layer, r in by.items()}
                                       for s, by in steps.items()}, k)


def check_trace(trace: RoutingTrace, n_phases: int, layers: tuple[int, ...],
                tokens: list[int], n_experts: int, top_k: int, model: str) -> None:
    """Refuse a trace that does not cover this run: every phase, MoE layer and token."""
    where = f"routing file {trace.path}"
    if trace.top_k != top_k:
        raise RoutingError(f"{where}: {trace.top_k} experts per token; {model!r} routes each "
                           f"token to top_k = {top_k}")
    for step in range(n_phases):
        by = trace.steps.get(step)
        if by is None:
            raise RoutingError(f"{where}: no rows for step {step}; the run has steps 0 .. "
                               f"{n_phases - 1} (0 the prefill)")
        for layer in layers:
            ids = by.get(layer)
            if ids is None:
                raise RoutingError(f"{where}: no rows for step {step}, layer {layer} (an MoE "
                                   "layer)")
            if len(ids) != tokens[step]:
                raise RoutingError(f"{where}: step {step}, layer {layer}: {len(ids)} tokens; "
                                   f"the run feeds {tokens[step]} (batch x tokens of the "
                                   "step)")
            if ids.max() >= n_experts:
                raise RoutingError(f"{where}: step {step}, layer {layer}: expert "
                                   f"{int(ids.max())}; {model!r} has experts 0 .. "
                                   f"{n_experts - 1}")
