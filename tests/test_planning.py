"""Per-op planning shared by both engines (sim.planning): options, the tp check, MOPs, OpFacts,
and the import direction: the analytic engine never loads the SimPy one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from toy import KB, chain, toy_hierarchy, toy_runtime

from sim import Interconnect, tensor_footprint
from sim.errors import MemwallError
from sim.memory import Memory, activation_pool_bytes
from sim.opgraph import Tensor, op_mops_bytes, topo_ops
from sim.planning import EngineOptions, OpFacts, check_tp

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["sim.analytic", "sim.planning"])
def test_the_analytic_engine_and_planning_never_import_the_simpy_engine(module):
    code = (f"import sys, {module}, sim; sim.simulate_analytic; "
            "bad = {'sim.engine', 'sim.fabric', 'simpy'} & set(sys.modules); "
            "sys.exit(f'{sorted(bad)} imported' if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    from sim import simulate  # still one name away, loaded on first use

    assert simulate.__module__ == "sim.engine"


def test_options_are_checked_once():
    rt = toy_runtime()
    assert EngineOptions(rt) == EngineOptions(rt, prefetch_depth=None, overlap=True, tp=1)
    with pytest.raises(MemwallError, match="prefetch depth = 2000: expected an integer"):
        EngineOptions(rt, prefetch_depth=2000)
    with pytest.raises(MemwallError, match="tp = 0: expected an integer >= 1"):
        EngineOptions(rt, tp=0)


def test_tp_needs_an_interconnect_with_room_for_the_group():
    hier = toy_hierarchy()
    check_tp(hier, 1)
    with pytest.raises(MemwallError, match="--tp 2 needs an interconnect section"):
        check_tp(hier, 2)
    linked = hier.__class__(**{**hier.__dict__,
                               "interconnect": Interconnect(1e11, 1e-6, "ring", 4)})
    check_tp(linked, 4)
    with pytest.raises(MemwallError, match="--tp 8 exceeds interconnect.max_devices = 4"):
        check_tp(linked, 8)


def test_mops_count_every_operand_once_and_each_fused_part_at_its_own_boundary():
    x, w, y = (Tensor(n, c, (1,), "fp32", b) for n, c, b in
               (("x", "activation", 100), ("w", "weight", 4000), ("y", "activation", 100)))
    assert op_mops_bytes({"reads": (x, w), "writes": (y,)}) == 4200
    h = Tensor("h", "activation", (1,), "fp32", 300)  # between the parts: counted twice
    fused = {"reads": (x, w), "writes": (y,),
             "parts": (("matmul", 800, "fp32", (x, w), (h,)), ("vector", 75, "fp32", (h,), (y,)))}
    assert op_mops_bytes(fused) == 4100 + 300 + 300 + 100


def facts_for(G):
    hier = toy_hierarchy(sram_policy="none")  # no cache: every plan is fixed bytes per level
    mem = Memory(hier, tensor_footprint(G), activation_pool_bytes(G))
    return OpFacts(hier.compute, toy_runtime(), mem), topo_ops(G)


def test_facts_are_derived_once_while_a_node_keeps_its_tuples():
    G = chain(2, w_bytes=400 * KB, flops=2_000_000)
    facts, ops = facts_for(G)
    first = facts.phase(ops)
    assert [f.op_type for f in first] == ["mm", "mm"] and first[0].prefetch
    assert first[0].compute_s == pytest.approx(2e-6)  # 2 MFLOP at 1 TFLOP/s
    assert first[0].mops_bytes == 402 * KB and first[0].weights == ({1: 400 * KB}, ())
    assert first[0].others == ({0: KB}, ()) and first[0].results == ({0: KB}, ())
    again = facts.phase(ops)
    assert all(a is b for a, b in zip(first, again, strict=True))
    G.nodes["op1"]["flops"] = 4_000_000  # a decode template updated in place
    third = facts.phase(topo_ops(G))
    assert third[0] is first[0] and third[1] is not first[1]
    assert third[1].compute_s == pytest.approx(4e-6)
