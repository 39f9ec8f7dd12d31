"""Tensor parallelism: collectives on the interconnect, per-device shares, errors."""

from __future__ import annotations

import dataclasses
import json

import networkx as nx
import pytest
from runs import HIER_DIR, simulate_spec
from toy import toy_hierarchy, toy_options, toy_runtime

import workloads
from memwall import cli
from sim import Interconnect, Summary, cost, load_hierarchy, simulate
from sim.errors import MemwallError
from sim.opgraph import Tensor

US = 1e-6


def link(topology: str, bw: float = 100e9, latency: float = 1 * US) -> Interconnect:
    return Interconnect(bw, latency, topology, max_devices=16)


@pytest.mark.parametrize(
    "topology,n,expected",
    [
        # ring: 2(N-1)/N of 1 MB over 100 GB/s, plus 2(N-1) latencies of 1 us
        ("ring", 4, 2 * 3 / 4 * 1e6 / 100e9 + 6 * US),
        ("ring", 8, 2 * 7 / 8 * 1e6 / 100e9 + 14 * US),
        # switch: the same bytes, 2 latencies (two-shot: reduce-scatter, all-gather)
        ("switch", 4, 2 * 3 / 4 * 1e6 / 100e9 + 2 * US),
        # fully connected: the bytes spread over N-1 links
        ("full", 4, 2 * 3 / 4 * 1e6 / (3 * 100e9) + 2 * US),
    ],
)
def test_all_reduce_time_by_hand(topology, n, expected):
    two_shot = toy_runtime(collective="two_shot")  # a ring of links falls back to ring
    assert cost.all_reduce_s(1e6, n, link(topology), two_shot) == pytest.approx(expected,
                                                                               rel=1e-12)
    assert cost.all_reduce_s(1e6, 1, link(topology), two_shot) == 0.0


@pytest.mark.parametrize("algorithm, expected", [
    ("ring", 2 * 7 / 8 * 1e6 / 100e9 + 14 * US + 2 * US),  # 2(N-1) steps of S/N
    ("tree", 2 * 1e6 / 100e9 + 2 * 3 * US + 2 * US),  # 2 S / B + 2 log2(N) steps
    ("two_shot", 2 * 7 / 8 * 1e6 / 100e9 + 2 * US + 2 * US),
    ("one_shot", 7 * 1e6 / 100e9 + 1 * US + 2 * US),  # every device reads the 7 others'
])
def test_all_reduce_algorithms_by_hand(algorithm, expected):
    """8 devices on a switch, 1 MB, 100 GB/s; each step over the links costs the link's 1 us,
    and the collective the runtime's 2 us once."""
    rt = toy_runtime(collective=algorithm, collective_latency_s=2 * US)
    assert cost.all_reduce_s(1e6, 8, link("switch"), rt) == pytest.approx(expected, rel=1e-12)


def test_auto_takes_one_shot_for_small_messages_and_two_shot_for_large():
    auto, one, two = (toy_runtime(collective=a, collective_latency_s=5 * US)
                      for a in ("auto", "one_shot", "two_shot"))
    small, large = 16e3, 64e6
    assert cost.all_reduce_s(small, 8, link("switch"), auto) == cost.all_reduce_s(
        small, 8, link("switch"), one) < cost.all_reduce_s(small, 8, link("switch"), two)
    assert cost.all_reduce_s(large, 8, link("switch"), auto) == cost.all_reduce_s(
        large, 8, link("switch"), two) < cost.all_reduce_s(large, 8, link("switch"), one)


def test_a_collective_op_is_charged_to_the_interconnect():
    hier = dataclasses.replace(toy_hierarchy(), interconnect=link("ring"))
    G = nx.DiGraph(phase="decode", step=1)
    x = Tensor("x", "activation", (1,), "fp32", 1_000_000)
    G.add_node("ar", kind="collective", op="all_reduce", layer=0, flops=0, dtype="fp32",
               reads=(x,), writes=(x,), group=4)
    records: list = []
    simulate([G], hier, {}, records.append, toy_options(toy_runtime(dispatch_s=0.0), tp=4))
    r = records[0]
    assert r.interconnect_s == pytest.approx(2 * 3 / 4 * 1e6 / 100e9 + 6 * US, rel=1e-9)
    assert r.end_s - r.start_s == pytest.approx(r.interconnect_s, rel=1e-9)
    s = Summary(hier)
    s.add(r)
    assert s.result({})["stall_s"]["interconnect"] == pytest.approx(r.interconnect_s)


def llama(tp: int, gen_len: int = 3) -> dict:
    hier = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR])
    spec = workloads.RunSpec(workloads.load_workload("llama2-70b"), prompt_len=8, gen_len=gen_len,
                             tp=tp)
    return simulate_spec(spec, hier)


def test_llama2_70b_decode_gets_faster_with_devices_while_the_interconnect_share_grows():
    runs = {n: llama(n) for n in (2, 4, 8)}
    decode = [runs[n]["decode_s_per_token"] for n in (2, 4, 8)]
    share = [runs[n]["stall_s"]["interconnect"] / runs[n]["total_s"] for n in (2, 4, 8)]
    hbm = [runs[n]["bytes_by_level"]["hbm"] for n in (2, 4, 8)]
    assert decode[0] > decode[1] > decode[2]
    assert share[0] < share[1] < share[2]
    assert hbm[0] > 1.9 * hbm[1] > 1.9 * 1.9 * hbm[2]  # per-device bytes fall about as 1/N


def test_interconnect_time_grows_with_devices_times_latency_on_a_ring():
    base = load_hierarchy("a100_80gb.yaml", search_dirs=[HIER_DIR],
                          overrides=["interconnect.topology=ring"])
    spec = workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=8, gen_len=2, tp=2)
    ic = {}
    for n in (2, 4):
        s = dataclasses.replace(spec, tp=n)
        ic[n] = simulate_spec(s, base)["stall_s"]["interconnect"]
    collectives = 2 * 12 * 2  # two per layer, 12 layers, 2 phases
    # going from 2 to 4 devices adds 4 latencies per all-reduce on a ring
    assert ic[4] - ic[2] >= collectives * 4 * base.interconnect.latency_s * 0.99


def test_tp_1_is_exactly_the_single_device_run(capsys):
    argv = ["--workload", "gpt2", "--hier", "a100_80gb.yaml", "--prompt-len", "8",
            "--gen-len", "3", "--json", "-"]
    assert cli.main(argv) == 0
    one = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--tp", "1"]) == 0
    tp1 = json.loads(capsys.readouterr().out)
    assert tp1["provenance"].pop("command_line")[-2:] == ["--tp", "1"]
    one["provenance"].pop("command_line")
    assert tp1 == one


def test_tp_errors_are_one_line(capsys):
    assert cli.main(["--workload", "llama2-7b", "--hier", "a100_80gb.yaml", "--tp", "16"]) == 2
    assert "max_devices = 8" in capsys.readouterr().err
    assert cli.main(["--workload", "gpt2", "--hier", "a100_80gb.yaml", "--tp", "5"]) == 2
    assert "divides" in capsys.readouterr().err
    assert cli.main(["--workload", "gpt2", "--hier", "sram_only.yaml", "--tp", "2"]) == 2
    assert "interconnect" in capsys.readouterr().err
    with pytest.raises(MemwallError):
        simulate_spec(
            workloads.RunSpec(workloads.load_workload("gpt2"), prompt_len=4, gen_len=1, tp=2),
            load_hierarchy("sram_only.yaml", search_dirs=[HIER_DIR]),
        )
