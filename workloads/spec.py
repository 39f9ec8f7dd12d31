"""What to run: a model, batch, prompt and generation lengths, precision, tensor parallelism and
(for a mixture of experts) the routing.

Run semantics. A decoder runs phase 0, the prefill of `prompt_len` tokens (its LM head runs on
the last position only and yields generated token 1), then decode steps k = 1 .. gen_len - 1,
each feeding 1 token per sequence with kv_len = prompt_len + k positions in the cache after the
step. The last generated token is never fed back. gen_len = 0 means prefill only, with no LM
head (nothing is generated); gen_len = 1 is a prefill that yields one token (time to first
token). An encoder runs one "encode" phase over `prompt_len` tokens and needs gen_len = 0.
The paper's Fig. 3 decoder ("iteratively generate the full sequence" of length L) is
prompt_len = 1, gen_len = L: L forward passes of one token, attending over 1 .. L positions.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

from workloads.model import ModelConfig, Precision, WorkloadError
from workloads.routing import Routing, check_trace


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One inference request, validated on construction (WorkloadError, one line). The
    lengths have no defaults here: memwall.inputs holds the one set of run defaults."""

    model: ModelConfig
    _: KW_ONLY
    prompt_len: int  # tokens per sequence in phase 0
    gen_len: int  # tokens generated per sequence
    batch: int = 1  # sequences
    precision: Precision = field(default_factory=Precision)
    tp: int = 1  # tensor-parallel devices; graphs are of one device
    routing: Routing = field(default_factory=Routing)  # which experts routers pick (MoE)

    def __post_init__(self) -> None:
        m = self.model
        for key, low in (("batch", 1), ("prompt_len", 1), ("gen_len", 0), ("tp", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise WorkloadError(f"{key} = {value!r}: expected an int >= {low}")
        if m.arch == "encoder" and self.gen_len:
            raise WorkloadError(f"gen_len = {self.gen_len}: {m.name!r} is an encoder, which "
                                "runs one pass over prompt_len tokens; expected gen_len = 0")
        if self.positions > m.max_positions:
            table = ("a learned position table of" if m.positions == "learned"
                     else "max_position_embeddings =")
            raise WorkloadError(
                f"prompt_len + gen_len - 1 = {self.positions} positions: {m.name!r} has "
                f"{table} {m.max_positions}; expected at most that")
        for what, n in (("n_heads", m.n_heads), ("n_kv_heads", m.n_kv_heads), ("d_ff", m.d_ff),
                        ("d_ff_expert", m.d_ff_expert), ("d_ff_shared", m.d_ff_shared)):
            if n % self.tp:
                raise WorkloadError(f"tp = {self.tp}: {m.name!r} has {what} = {n}; expected a "
                                    f"tp that divides it")
        if self.routing.trace is not None and m.n_experts:
            check_trace(self.routing.trace, self.n_phases, m.moe_layers,
                        [self.batch * self.tokens(k) for k in range(self.n_phases)],
                        m.n_experts, m.top_k, m.name)

    @property
    def positions(self) -> int:
        """Positions fed through the model in the whole run (= KV length at the end)."""
        return self.prompt_len + max(self.gen_len - 1, 0)

    @property
    def n_phases(self) -> int:
        """Phase 0 (prefill or encode) plus gen_len - 1 decode steps."""
        return 1 + max(self.gen_len - 1, 0)

    def kv_len(self, step: int) -> int:
        """Positions in the KV cache after `step` (0 for an encoder, which keeps none)."""
        if self.model.arch == "encoder":
            return 0
        return self.prompt_len + step

    def tokens(self, step: int) -> int:
        """Positions per sequence fed in `step`."""
        return self.prompt_len if step == 0 else 1

    def route(self, step: int) -> list:
        """The experts each MoE layer reads in `step` (routing.Routing.route)."""
        m = self.model
        return self.routing.route(step, self.batch * self.tokens(step), m.moe_layers,
                                  m.n_experts, m.top_k)
