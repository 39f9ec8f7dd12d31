"""The README's examples run: its Python blocks run, and the commands whose output it quotes
print what it quotes (exactly, or the figures it cites, to the digits it gives)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import memwall
from memwall import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def test_the_python_api_example_prints_what_the_readme_says(tmp_path, monkeypatch) -> None:
    section = _section("Python API")
    (code,), (want,) = _blocks(section, "python"), _blocks(section, "text")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue() == want


def test_the_report_is_what_the_quick_start_command_prints(capsys) -> None:
    section = _section("Reading the report")
    (want,) = _blocks(section, "")
    assert "`--hier hbm_accel_big_l2.yaml`" in section
    assert cli.main(["--workload", "gpt2", "--hier", "hbm_accel.yaml"]) == 0
    assert capsys.readouterr().out == want
    base = memwall.simulate("gpt2", "hbm_accel")
    big = memwall.simulate("gpt2", "hbm_accel_big_l2")
    gain = re.search(r"512 MiB L2: ([0-9.]+)x faster", section).group(1)
    assert f"{base.decode_s_per_token / big.decode_s_per_token:.1f}" == gain
    eager = memwall.simulate("gpt2", "hbm_accel", fusion="none",
                             overrides=["runtime.kernels.launch=10 us"])
    assert "`--set 'runtime.kernels.launch=10 us' --fusion none`" in section
    assert eager.bound_by == "dispatch"


def test_the_sweep_file_example_is_a_valid_sweep(tmp_path) -> None:
    from memwall import sweeps

    (text,) = _blocks(_section("Sweeps"), "yaml")
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    points = sweeps.resolve(sweeps.read_sweep(path))
    assert len(points) == 3 * (3 * 2 * 2) * 2  # workloads x grid x zip
    assert {p.run["batch"] for p in points} == {1, 8}
    assert all(p.task is not None for p in points)
