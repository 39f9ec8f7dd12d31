"""The README's examples run: its Python blocks run, and the commands whose output it quotes
print what it quotes, exactly, or the figures it cites to the digits it gives them. So the
README cannot drift from the code: a change that moves a quoted figure fails here until the
README says what the code prints."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

import memwall
from memwall import cli, paper

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str, level: int = 2) -> str:
    """The text under a heading `title`, up to the next heading of its level or above (lines
    inside fenced blocks are not headings: a Python comment starts with "# ")."""
    out, inside, fenced = None, False, False
    for line in README.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        heading = not fenced and re.match(r"(#+) ", line)
        if heading and len(heading[1]) <= level:
            if inside:
                break
            inside = line.strip() == f"{'#' * level} {title}"
            out = [] if inside else out
        if inside:
            out.append(line)
    assert out, f"no section {title!r} in the README"
    return "".join(out)


def _blocks(section: str, lang: str) -> list[str]:
    """The fenced blocks of `section` whose info string is `lang` ("" for a bare fence)."""
    out, lines, inside, kind = [], [], False, ""
    for line in section.splitlines(keepends=True):
        if line.startswith("```"):
            if inside:
                if kind == lang:
                    out.append("".join(lines))
                inside, lines = False, []
            else:
                inside, kind = True, line[3:].strip()
        elif inside:
            lines.append(line)
    return out


def _run_python(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    return out.getvalue()


def _cited(text: str, value: float) -> bool:
    """Whether `value` rounds to `text` ("5.37", "2.24e10", "60") at the digits written."""
    m = re.fullmatch(r"([+-]?\d+)(?:\.(\d+))?(?:e([+-]?\d+))?", text.replace(",", ""))
    assert m, text
    exp = int(m[3] or 0)
    step = 10.0 ** (exp - len(m[2] or ""))
    return abs(value - float(text.replace(",", ""))) <= 0.5 * step * (1 + 1e-9)


def _cites(pattern: str, section: str) -> tuple[str, ...]:
    """The groups of `pattern` in `section` (whitespace in either matches any run of it)."""
    flat = " ".join(section.split())
    m = re.search(" ".join(pattern.split()), flat)
    assert m, f"the README no longer says {pattern!r}"
    return m.groups()


def test_the_python_api_example_prints_what_the_readme_says(tmp_path, monkeypatch) -> None:
    section = _section("Python API")
    (code,), (want,) = _blocks(section, "python"), _blocks(section, "text")
    monkeypatch.chdir(tmp_path)
    assert _run_python(code) == want


def test_the_serving_example_prints_what_the_readme_says(tmp_path, monkeypatch) -> None:
    section = _section("Serving")
    (code,), (want,) = _blocks(section, "python"), _blocks(section, "text")
    monkeypatch.chdir(tmp_path)
    assert _run_python(code) == want


def test_the_report_is_what_the_quick_start_command_prints(capsys) -> None:
    section = _section("Reading the report")
    (want,) = _blocks(section, "")
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml"]) == 0
    assert capsys.readouterr().out == want
    base = memwall.simulate("gpt2", "hbm_accel")
    big = memwall.simulate("gpt2", "hbm_accel_big_l2")
    (gain,) = _cites(r"`--hier hbm_accel_big_l2.yaml` \(the weights stay in a 512 MiB L2: "
                     r"([0-9.]+)x faster\)", section)
    assert _cited(gain, base.decode_s_per_token / big.decode_s_per_token)
    (rate,) = _cites(r"hbm_accel_big_l2.yaml`: ([0-9.]+)%\)", section)
    assert _cited(rate, 100 * big.cache_hit_rate["l2"])
    eager = memwall.simulate("gpt2", "hbm_accel", fusion="none",
                             overrides=["runtime.kernels.launch=10 us"])
    _cites(r"`--set 'runtime.kernels.launch=10 us' --fusion none` \(an eager runtime: "
           r"launches, not memory, become the wall\)", section)
    assert eager.bound_by == "dispatch"


def test_the_describe_example(capsys) -> None:
    (want,) = _blocks(_section("Models"), "")
    assert want.startswith("mixtral-8x7b (decoder)")
    assert cli.main(["describe", "--workload", "mixtral-8x7b"]) == 0
    assert capsys.readouterr().out == want


def _expand(line: str) -> list[list[str]]:
    """A usage line of the README as commands to run: once bare (no [optional] part), once
    with every optional part, each `a|b|c` once per choice, placeholders filled."""
    fill = {"A:B": "700:703", "N": "3", "K": "3"}
    words = shlex.split(line)[1:]  # without "memwall"
    bare, full, i = [], [], 0
    while i < len(words):
        w = words[i]
        if w.startswith("["):
            group = []
            while True:
                group.append(words[i].strip("[]"))
                if words[i].endswith("]"):
                    break
                i += 1
            full += group
        else:
            bare.append(w)
            full.append(w)
        i += 1
    out = []
    for cmd in (bare, full):
        choices = [(j, [c for c in w.split("|") if c != "collective"])  # none at tp 1
                   for j, w in enumerate(cmd) if "|" in w]
        n = max((len(c) for _, c in choices), default=1)
        for k in range(n):
            got = [fill.get(w, w) for w in cmd]
            for j, c in choices:
                got[j] = c[min(k, len(c) - 1)]
            out.append(got)
    return out


def test_the_trace_recipe_and_its_python_example(tmp_path, monkeypatch, capsys) -> None:
    section = _section("Traces")
    (commands,) = _blocks(section, "")
    (code,), (want,) = _blocks(section, "python"), _blocks(section, "text")
    monkeypatch.chdir(tmp_path)
    lines = commands.splitlines()
    assert lines[0] == "memwall --workload gpt2 --hier hbm_accel.yaml --gen-len 800 --trace run.h5"
    for line in lines:
        for argv in _expand(line):
            assert cli.main(argv) == 0, argv
    capsys.readouterr()
    for name in ("run.h5", "timeline.json", "picture.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert _run_python(code) == want


GOLDEN = Path(__file__).parent / "golden" / "validation.json"


def _mape_table(section: str) -> dict[str, list[str]]:
    """The README's MAPE table: its key (the text in backticks of the first cell) -> cells."""
    table = section[section.index("| rows | count |"):]
    out = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        (key,) = re.findall(r"`([^`]+)`", cells[0])
        out[key] = cells[1:]
    return out


def test_the_validation_table_is_the_recorded_validation() -> None:
    """Every figure of the README's MAPE table is the recorded validation's
    (tests/golden/validation.json; tests/test_validation_pin.py recomputes rows of it)."""
    section = _section("Validation")
    table = _mape_table(section)
    record = json.loads(GOLDEN.read_text())["engines"]
    assert {"all", "validation", "a100_80gb.yaml", "tensorrt-llm"} <= set(table)
    for key, cells in table.items():
        rows = "validation" if key == "validation" else "all"
        group = "overall" if key in ("all", "validation") else key
        count, *mapes = cells
        points = record["des"]["points"]
        n = sum(1 for p in points if (rows == "all" or p["role"] == "validation")
                and group in ("overall", p["hier"], p["runtime"]))
        assert int(count) == n, key
        want = [record[e]["mape"][rows][k][group] for e in ("des", "analytic")
                for k in ("in_sample", "held_out")]
        for text, value in zip(mapes, want, strict=True):
            assert _cited(text.rstrip("%"), value), (key, text, value)
    (n_cal,) = _cites(r"(\d+) calibration rows", section)
    assert int(n_cal) == sum(p["role"] == "calibration" for p in record["des"]["points"])


def test_the_projection_figures() -> None:
    section = _section("The paper")
    now, later, c0, c10, m0, m10 = _cites(
        r"\(the hardware alone\): ([0-9.]+) ms/token now, ([0-9.]+) ms in 10 years \(the 1.6x "
        r"DRAM rate\), compute utilisation ([0-9.]+)% falling to ([0-9.]+)%, stalled on "
        r"memory \(bound by HBM\) ([0-9.]+)% to ([0-9.]+)% of the time", section)
    rows = paper.projection("h100_sxm.yaml", "llama2-7b", 10,
                            overrides=["runtime.kernels.launch=0 us"])
    first, last = rows[0], rows[-1]
    assert _cited(now, 1e3 * first["decode_s_per_token"])
    assert _cited(later, 1e3 * last["decode_s_per_token"])
    assert _cited(c0, 100 * first["compute_utilization"])
    assert _cited(c10, 100 * last["compute_utilization"])
    assert _cited(m0, 100 * first["memory_stall_share"])
    assert _cited(m10, 100 * last["memory_stall_share"])
    assert {r["bound_by"] for r in rows} == {"hbm"}
    now, later = _cites(r"takes a growing share: ([0-9.]+) ms/token now, ([0-9.]+) ms in 10 "
                        r"years", section)
    launched = paper.projection("h100_sxm.yaml", "llama2-7b", 10)
    assert _cited(now, 1e3 * launched[0]["decode_s_per_token"])
    assert _cited(later, 1e3 * launched[-1]["decode_s_per_token"])


def test_the_fig1_growth_rates() -> None:
    flops, dram, ic = _cites(r"\*\*FLOPS ([0-9.]+)x, DRAM ([0-9.]+)x, interconnect ([0-9.]+)x\*\*",
                             _section("The paper"))
    fits = paper.fig1()
    assert _cited(flops, fits["flops"]["rate_per_2y"])
    assert _cited(dram, fits["dram_bw"]["rate_per_2y"])
    assert _cited(ic, fits["interconnect_bw"]["rate_per_2y"])


@pytest.mark.slow
def test_the_fig3_table() -> None:
    section = _section("The paper")
    table = section[section.index("| L | FLOPs"):].splitlines()[2:]
    quoted = {}
    for line in table:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        quoted[int(cells[0])] = [c.split(" / ") for c in cells[1:]]
    rows = paper.fig3(lengths=tuple(quoted))
    got = {(r["model"], r["seq_len"]): r for r in rows}
    for L, (flops, mops, ai, latency) in quoted.items():
        for j, model in enumerate(paper.FIG3_MODELS):
            r = got[model, L]
            assert _cited(flops[j], r["flops"]), (model, L, flops[j])
            assert _cited(mops[j], r["mops_bytes"]), (model, L, mops[j])
            assert _cited(ai[j], r["arithmetic_intensity"]), (model, L, ai[j])
            assert _cited(latency[j], r["latency_normalized"]), (model, L, latency[j])
    at128, at4096 = _cites(r"\((\d+)x BERT-Base at 128, (\d+)x at 4096\)", section)
    ratio = {L: got["gpt2", L]["mops_bytes"] / got["bert-base", L]["mops_bytes"]
             for L in (128, 4096)}
    assert _cited(at128, ratio[128]) and _cited(at4096, ratio[4096])


@pytest.mark.slow
def test_the_mixture_of_experts_what_if_table() -> None:
    section = _section("Mixtures of experts", level=3)
    table = section[section.index("| design | uniform routing"):].splitlines()[2:]
    checked = 0
    for line in table:
        if not line.startswith("|"):
            break
        design, *cells = (c.strip() for c in line.strip("|").split("|"))
        words = [w for code in re.findall(r"`([^`]*)`", design) for w in shlex.split(code)]
        sets = [words[k + 1] for k, w in enumerate(words) if w == "--set"]
        for routing, cell in zip(("uniform", "zipf:1.2"), cells, strict=True):
            r = memwall.simulate("mixtral-8x7b", "hbm_accel_tiered", prompt_len=16, gen_len=64,
                                 routing=routing, overrides=sets)
            (ms,) = re.findall(r"([0-9.]+) ms/token", cell)
            assert _cited(ms, 1e3 * r.decode_s_per_token), (design, routing, cell)
            for gb in re.findall(r"([0-9.]+) GB from LPDDR", cell):
                assert _cited(gb, r.bytes_by_level["lpddr"] / 1e9), (design, routing, cell)
            for hit in re.findall(r"([0-9.]+)% (?:of L2 reads )?hit", cell):
                assert _cited(hit, 100 * r.cache_hit_rate["l2"]), (design, routing, cell)
            if "no L2 hits" in cell:
                assert r.cache_hit_bytes["l2"] == 0
            checked += 1
    assert checked == 10


@pytest.mark.slow
def test_the_energy_validation_table_and_its_mape() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_energy", README.parent / "bench" / "bench_energy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    section = _section("Energy")
    table = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    rows = bench.rows()
    assert len(table) - 1 == len(rows)  # the header, then a line per row
    errors: dict[str, list[float]] = {}
    for line, row in zip(table[1:], rows, strict=True):
        _, meas, pred, err = (c.strip() for c in line.strip("|").split("|"))
        got = bench.predict(row)
        measured = float(row["measured"])
        assert _cited(pred, got), (row["id"], pred, got)
        assert float(meas) == pytest.approx(measured, rel=5e-3), row["id"]
        assert _cited(err.rstrip("%"), 100 * (got / measured - 1)), (row["id"], err)
        errors.setdefault(row["metric"], []).append(abs(got / measured - 1))
    jpt, n_j, power, n_p = _cites(r"MAPE ([0-9.]+)% on joules per token \((\d+) rows\), "
                                  r"([0-9.]+)% on power \((\d+) rows\)", section)
    assert _cited(jpt, 100 * sum(errors["joules_per_token"]) / int(n_j))
    assert _cited(power, 100 * sum(errors["average_power_w"]) / int(n_p))
    assert (int(n_j), int(n_p)) == (len(errors["joules_per_token"]),
                                    len(errors["average_power_w"]))
