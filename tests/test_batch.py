"""workloads/batch.py: the op graph of a serving iteration."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.opgraph import check_op_graph, op_mops_bytes
from workloads import Precision, RunSpec, WorkloadError, build_phase, fuse, preset
from workloads.batch import BatchBuilder, Batches, Seq, groups_of, serving_spec


def _same(G: nx.DiGraph, H: nx.DiGraph) -> None:
    assert set(G.nodes) == set(H.nodes)
    assert set(G.edges) == set(H.edges)
    for n in G.nodes:
        assert G.nodes[n] == H.nodes[n], n
    for k in ("phase", "weight_bytes", "per_step", "tokens"):
        assert G.graph[k] == H.graph[k], k


def _spec(name: str, **kw) -> RunSpec:
    return RunSpec(preset(name), prompt_len=kw.pop("prompt_len", 64), gen_len=8, **kw)


@pytest.mark.parametrize("name", ["gpt2", "llama2-7b", "mistral-7b"])
def test_one_sequence_is_the_phase_graph(name: str) -> None:
    spec = _spec(name)
    b = Batches(serving_spec(spec.model, spec.precision))
    _same(b.graph([Seq(64, 64, True, True)], 0), build_phase(spec, 0))
    for k in (1, 2, 7):  # the kept graph, its attention rewritten in place
        _same(b.graph([Seq(1, 64 + k, True, False)], k), build_phase(spec, k))


def test_sequences_of_one_shape_are_the_batched_phase_graph() -> None:
    spec = _spec("llama2-7b", batch=6)
    b = Batches(serving_spec(spec.model, spec.precision))
    _same(b.graph([Seq(64, 64, True, True)] * 6, 0), build_phase(spec, 0))
    _same(b.graph([Seq(1, 67, True, False)] * 6, 3), build_phase(spec, 3))


def test_fused_batch_of_one_is_the_fused_phase_graph() -> None:
    spec = _spec("gpt2")
    b = Batches(serving_spec(spec.model, spec.precision), "fused")
    _same(b.graph([Seq(64, 64, True, True)], 0), fuse(build_phase(spec, 0))[0])
    _same(b.graph([Seq(1, 66, True, False)], 2), fuse(build_phase(spec, 2))[0])


def _single(spec: RunSpec, s: Seq) -> nx.DiGraph:
    return BatchBuilder(spec, [s], 0).build()


seqs = st.lists(st.builds(lambda t, extra, dec: Seq(1, t + extra, True, False) if dec
                          else Seq(t, t + extra, extra == 0, True),
                          st.integers(1, 40), st.integers(0, 30), st.booleans()),
                min_size=2, max_size=6)


@settings(max_examples=25, deadline=None)
@given(seqs)
def test_a_batch_computes_what_its_sequences_do_alone(batch: list[Seq]) -> None:
    """FLOPs add up over the sequences (GEMMs over all their rows, attention over each one's
    own KV length), the KV cache read is the sum of theirs, and the weights are read once."""
    spec = serving_spec(preset("gpt2"), Precision())
    G = BatchBuilder(spec, batch, 0).build()
    check_op_graph(G)
    alone = [_single(spec, s) for s in batch]
    flops = sum(a["flops"] for _, a in G.nodes(data=True))
    assert flops == sum(a["flops"] for H in alone for _, a in H.nodes(data=True))

    def kv_read(H: nx.DiGraph) -> int:
        return sum(t.nbytes for n, a in H.nodes(data=True) if a["op"] == "attn_score"
                   for t in a["reads"] if t.cls == "kv_cache")

    def weights_read(H: nx.DiGraph) -> set[str]:
        return {t.name for _, a in H.nodes(data=True) for t in a["reads"] if t.cls == "weight"}

    assert kv_read(G) == sum(kv_read(H) for H in alone)
    assert weights_read(G) == set().union(*map(weights_read, alone))
    mops_parts = sum(op_mops_bytes(a) for n, a in G.nodes(data=True) if a["op"] == "attn_score")
    assert mops_parts == sum(op_mops_bytes(a) for H in alone for _, a in H.nodes(data=True)
                             if a["op"] == "attn_score")
    lm = G.nodes.get("lm_head")
    sampled = sum(s.sample for s in batch)
    assert (lm is not None) == (sampled > 0)
    if lm is not None:
        assert lm["reads"][0].shape[0] == sampled


def test_kept_graphs_are_rewritten_to_what_a_fresh_build_gives() -> None:
    spec = serving_spec(preset("llama2-7b"), Precision())
    for fusion in ("none", "fused"):
        b = Batches(spec, fusion)
        first = [Seq(1, 100 + i, True, False) for i in range(5)]
        b.graph(first, 0)
        later = [Seq(1, 300 + 3 * i, True, False) for i in range(5)]
        got = b.graph(later, 1)
        fresh = BatchBuilder(spec, later, 1).build()
        _same(got, fresh if fusion == "none" else fuse(fresh)[0])
        assert got.graph["step"] == 1


def test_groups_and_phases() -> None:
    batch = [Seq(1, 10, True, False), Seq(1, 10, True, False), Seq(8, 8, True, True)]
    assert groups_of(batch) == ((1, 10, 2), (8, 8, 1))
    spec = serving_spec(preset("gpt2"), Precision())
    G = BatchBuilder(spec, batch, 4).build()
    assert (G.graph["phase"], G.graph["batch"], G.graph["tokens"], G.graph["step"]) == \
        ("mixed", 3, 10, 4)  # tokens: the packed rows
    score = G.nodes["h0.attn.score"]
    assert len(score["parts"]) == 2  # a batched GEMM per shape
    assert [p[3][0].shape[0] for p in score["parts"]] == [2, 1]


def test_serving_refuses_what_it_does_not_model() -> None:
    with pytest.raises(WorkloadError, match="encoder"):
        serving_spec(preset("bert-base"), Precision())
    with pytest.raises(WorkloadError, match="mixture of experts"):
        serving_spec(preset("mixtral-8x7b"), Precision())
    with pytest.raises(WorkloadError, match="at least one sequence"):
        BatchBuilder(serving_spec(preset("gpt2"), Precision()), [], 0)
