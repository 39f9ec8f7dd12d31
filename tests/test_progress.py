"""Progress on stderr for the long commands: a bar on a terminal, nothing off one (from the
command line), lines when a library caller asks off a terminal."""

from __future__ import annotations

import doctest
import io
import sys
from pathlib import Path

import pytest

import memwall.progress
from memwall import cli
from memwall import validation as validate


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


PROJECTION = ["paper", "projection", "--hier", "hbm_accel.yaml", "--workload", "gpt2",
              "--years", "2", "--prompt-len", "4", "--gen-len", "2", "--engine", "analytic"]


def test_docstring_examples_run() -> None:
    assert doctest.testmod(memwall.progress).failed == 0


def test_paper_shows_a_bar_on_a_terminal_and_nothing_off_one(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    assert cli.main([*PROJECTION, "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == f"wrote {tmp_path / 'a'}/\n"
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert cli.main([*PROJECTION, "--out", str(tmp_path / "b")]) == 0
    shown = term.getvalue()
    assert "projection:" in shown and "/2 [" in shown  # tqdm's bar, redrawn as runs finish
    assert shown.endswith(f"wrote {tmp_path / 'b'}/\n")


def test_validate_reports_progress_when_asked(capsys) -> None:
    points = [p for p in validate.load_points() if p.workload == "gpt3-350m"]
    validate.validate(points, engine="analytic", progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(f"validate: {len(points)}/{len(points)} points, 0 failed, ")
    validate.validate(points, engine="analytic")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("show", [False, True])
def test_a_bar_only_on_a_terminal_unless_asked(show: bool) -> None:
    from memwall.progress import Progress

    term = Terminal()
    with Progress(3, "run", "fig3", show=show, stream=term) as done:
        for _ in range(3):
            done()
    assert ("fig3" in term.getvalue()) is show
