"""Schedulers: what each iteration of a serving run computes, one class each behind a name.

Every scheduler sees the requests waiting (in arrival order; a preempted one that must be
recomputed goes back to the front), the sequences running and those swapped out, and the paged
KV cache (kv_cache.py). `plan()` returns the next iteration (the sequences it runs and how many
tokens each feeds, the swaps before it, the preemptions it made) or None when nothing can run
until a request arrives; `finish(plan, now)` applies its outcome: each sequence that sampled
has one more token, and the ones with all their tokens are done.

    continuous  iteration-level batching, prefill first (Orca, Yu et al. OSDI 2022; vLLM's
                default scheduler, Kwon et al. SOSP 2023): while requests wait and the KV
                blocks of their whole prompt (plus a 1% watermark, vLLM's), --max-seqs and
                --max-batched-tokens allow, an iteration prefills them, FCFS; otherwise every
                running sequence decodes one token, and when a sequence finds no free block
                the youngest running sequence is preempted (recomputed, or swapped out). Swapped
                sequences come back, FCFS, once no preemption was needed.
    chunked     chunked prefill mixed with decode (Sarathi-Serve, Agrawal et al. OSDI 2024):
                each iteration a budget of --chunked-prefill tokens is filled by every running
                decode first, then the unfinished prompts, then new requests, each prompt in
                chunks as long as the budget leaves.
    static      the baseline (FasterTransformer, Hugging Face generate): wait for --max-seqs
                requests (or the last ones), reserve KV blocks for their whole run, prefill
                them together and decode the batch until its longest output is done; every
                response of the batch returns when the batch ends.

To add one: a subclass of Scheduler with `plan`, an entry in SCHEDULERS, one test.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .kv_cache import PagedKVCache
from .requests import Arrival

WATERMARK = 0.01  # share of the KV blocks kept free at admission (vLLM's default watermark)
PREEMPT = ("recompute", "swap")


@dataclass(eq=False)
class Live:
    """A request in the system and its sequence's progress."""

    req: Arrival
    context: int  # positions its prefill must cover: the prompt (+ tokens generated, recomputed)
    cached: int = 0  # positions in its KV cache
    generated: int = 0  # tokens generated so far
    order: int = 0  # admission order: the largest is the youngest running sequence
    scheduled_s: float | None = None  # when it first ran
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0

    @property
    def id(self) -> int:
        return self.req.id

    @property
    def prefilling(self) -> bool:
        return self.cached < self.context

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output_tokens


@dataclass
class Plan:
    """One iteration: (sequence, tokens it feeds) in the order run, and the work before it."""

    run: list[tuple[Live, int]] = field(default_factory=list)
    swap_out: list[tuple[Live, int]] = field(default_factory=list)  # (sequence, bytes)
    swap_in: list[tuple[Live, int]] = field(default_factory=list)
    recomputed: list[Live] = field(default_factory=list)  # preempted, their KV dropped

    @property
    def preemptions(self) -> int:
        return len(self.swap_out) + len(self.recomputed)


class Scheduler:
    """The queues and the common moves: admit, grow with preemption, finish. A subclass
    decides the iterations (`plan`)."""

    name = ""

    def __init__(self, kv: PagedKVCache, max_seqs: int, max_tokens: int,
                 preempt: str = "recompute") -> None:
        self.kv, self.max_seqs, self.max_tokens, self.preempt = kv, max_seqs, max_tokens, preempt
        self.waiting: deque[Live] = deque()
        self.running: list[Live] = []  # oldest first
        self.swapped: deque[Live] = deque()
        self.arrivals_done = False  # no request will arrive any more
        self._order = 0
        self.watermark = int(WATERMARK * kv.blocks)

    def arrive(self, req: Arrival) -> None:
        self.waiting.append(Live(req, req.prompt_tokens))

    @property
    def in_system(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    def plan(self) -> Plan | None:
        raise NotImplementedError

    @property
    def spare(self) -> int:
        """Blocks an admission leaves free: the watermark, unless nothing runs (a prompt that
        needs nearly every block still runs alone)."""
        return self.watermark if self.running else 0

    # -- moves ------------------------------------------------------------------------------
    def admit(self, s: Live) -> None:
        """Start (or restart) `s` running, its blocks for the whole prefill taken."""
        self.kv.grow(s.id, s.context)
        self._order += 1
        s.order = self._order
        self.running.append(s)

    def room(self, s: Live, positions: int, plan: Plan) -> bool:
        """Grow `s` to `positions`, preempting the youngest running sequences for blocks;
        False if `s` itself had to go."""
        while not self.kv.grow(s.id, positions):
            victim = max(self.running, key=lambda x: x.order)
            self.evict(victim, plan)
            if victim is s:
                return False
        return True

    def evict(self, s: Live, plan: Plan) -> None:
        """Preempt running sequence `s`: swap its blocks out if the swap area takes them,
        else drop them and queue it to be recomputed (its prompt and the tokens it made)."""
        self.running.remove(s)
        s.preemptions += 1
        if self.preempt == "swap" and self.kv.can_swap_out(s.id):
            plan.swap_out.append((s, self.kv.swap_out(s.id)))
            self.swapped.append(s)
            return
        self.kv.release(s.id)
        s.context, s.cached = s.req.prompt_tokens + s.generated, 0
        plan.recomputed.append(s)
        self.waiting.appendleft(s)

    def resume(self, plan: Plan, budget: int) -> int:
        """Swap sequences back in, FCFS, while blocks (and the watermark), --max-seqs and
        `budget` tokens allow; each decodes this iteration. Returns the budget left."""
        kv = self.kv
        while self.swapped and budget > 0 and len(self.running) < self.max_seqs:
            s = self.swapped[0]
            if not kv.can_swap_in(s.id, spare=self.watermark + 1):
                break
            self.swapped.popleft()
            plan.swap_in.append((s, kv.swap_in(s.id)))
            self.running.append(s)
            if self.room(s, s.cached + 1, plan):
                plan.run.append((s, 1))
                budget -= 1
        return budget

    def finish(self, plan: Plan, now: float) -> list[Live]:
        """Apply an iteration that ended at `now`; returns the sequences it completed."""
        done = []
        for s, tokens in plan.run:
            s.cached += tokens
            if s.cached >= s.context and not s.done:
                s.generated += 1
                if s.first_token_s is None:
                    s.first_token_s = now
            if s.done and self.releases(s):
                done.append(s)
        for s in done:
            self.kv.release(s.id)
            self.running.remove(s)
            s.finish_s = now
        return done

    def releases(self, s: Live) -> bool:
        """Whether a sequence with all its tokens leaves now (static batching keeps it)."""
        return True


class ContinuousBatching(Scheduler):
    name = "continuous"

    def plan(self) -> Plan | None:
        plan = Plan()
        if not self.swapped:
            self._prefill(plan)
            if plan.run:
                return plan
        for s in list(self.running):  # oldest first; victims come from the young end
            if s in self.running and self.room(s, s.cached + 1, plan):
                plan.run.append((s, 1))
        if not plan.preemptions:
            self.resume(plan, self.max_seqs)
        return plan if plan.run or plan.preemptions else None

    def _prefill(self, plan: Plan) -> None:
        tokens = 0
        kv = self.kv
        while self.waiting and len(self.running) < self.max_seqs:
            s = self.waiting[0]
            if plan.run and tokens + s.context > self.max_tokens:
                break  # a prompt longer than the budget runs alone
            if not kv.fits(s.id, s.context, spare=self.spare):
                break
            self.waiting.popleft()
            self.admit(s)
            plan.run.append((s, s.context))
            tokens += s.context


class ChunkedPrefill(Scheduler):
    name = "chunked"

    def plan(self) -> Plan | None:
        plan = Plan()
        budget = self.max_tokens
        for s in list(self.running):
            if s in self.running and not s.prefilling and self.room(s, s.cached + 1, plan):
                plan.run.append((s, 1))
                budget -= 1
        if not plan.preemptions:
            budget = self.resume(plan, budget)
        for s in self.running:
            if budget <= 0:
                break
            if s.prefilling:
                chunk = min(s.context - s.cached, budget)
                plan.run.append((s, chunk))
                budget -= chunk
        kv = self.kv
        while (budget > 0 and self.waiting and len(self.running) < self.max_seqs
               and kv.fits(self.waiting[0].id, self.waiting[0].context, spare=self.spare)):
            s = self.waiting.popleft()
            self.admit(s)
            chunk = min(s.context, budget)
            plan.run.append((s, chunk))
            budget -= chunk
        return plan if plan.run or plan.preemptions else None


class StaticBatching(Scheduler):
    name = "static"

    def __init__(self, kv: PagedKVCache, max_seqs: int, max_tokens: int,
                 preempt: str = "recompute") -> None:
        super().__init__(kv, max_seqs, max_tokens, preempt)
        self.batch_end: int = 0  # positions the batch's longest member reaches

    def plan(self) -> Plan | None:
        plan = Plan()
        if self.running:  # the batch decodes until its longest output is done
            for s in self.running:
                plan.run.append((s, 1))
            return plan
        if len(self.waiting) < self.max_seqs and not self.arrivals_done:
            return None
        kv = self.kv
        batch: list[Live] = []
        longest = 0
        for s in list(self.waiting)[:self.max_seqs]:
            out = max(longest, s.req.output_tokens)
            # every member holds its prompt and the batch's longest output, less the last token
            need = sum(kv.blocks_for(x.context + out - 1) for x in (*batch, s))
            if need > kv.blocks:
                break
            batch.append(s)
            longest = out
        if not batch:
            return None
        for s in batch:
            self.waiting.popleft()
            kv.grow(s.id, s.context + longest - 1)
            self._order += 1
            s.order = self._order
            self.running.append(s)
            plan.run.append((s, s.context))
        return plan

    def finish(self, plan: Plan, now: float) -> list[Live]:
        super().finish(plan, now)
        if all(s.done for s in self.running):  # the batch ends: every response returns
            done = list(self.running)
            for s in done:
                self.kv.release(s.id)
                s.finish_s = now
            self.running.clear()
            return done
        return []

    def releases(self, s: Live) -> bool:
        return False


SCHEDULERS: dict[str, type[Scheduler]] = {
    "continuous": ContinuousBatching, "chunked": ChunkedPrefill, "static": StaticBatching,
}
