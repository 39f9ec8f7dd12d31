"""Outputs never replace what is not a regular file: FIFOs and devices are written through,
a symlink's target is replaced, a directory or a missing parent is refused before the run,
nothing is left behind, stale temporary files are cleaned; figures follow their extension."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import matplotlib
import pytest

import memwall
from memwall import cli
from sim import MemwallError
from sim.outfile import Staged, replacing, write_figure, write_text

RUN = ["--workload", "gpt2", "--hier", "hbm_accel.yaml", "--prompt-len", "4", "--gen-len", "2"]


def _read_fifo(path: Path, out: list[bytes]) -> threading.Thread:
    def reader() -> None:
        with open(path, "rb") as f:
            out.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t


def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    t = _read_fifo(fifo, got)
    assert cli.main([*RUN, "--json", str(fifo)]) == 0
    t.join(timeout=30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(got[0])["workload"] == "gpt2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_terminal_device_is_written_through() -> None:
    master, slave = os.openpty()  # a character device that is not /dev/null
    try:
        path = os.ttyname(slave)
        write_text(path, "hello\n")
        assert stat.S_ISCHR(os.stat(path).st_mode)
        assert os.read(master, 100).replace(b"\r", b"") == b"hello\n"
    finally:
        os.close(master)
        os.close(slave)


def test_a_symlink_keeps_pointing_at_its_replaced_target(tmp_path: Path) -> None:
    target = tmp_path / "real" / "out.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert cli.main([*RUN, "--json", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["workload"] == "gpt2"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "new.json")
    write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "real" / "new.json").read_text() == "x"


@pytest.mark.parametrize("flag", ["--json", "--trace"])
def test_a_directory_or_a_missing_parent_is_refused_before_the_run(tmp_path: Path, flag: str,
                                                                   capsys) -> None:
    for bad, words in ((tmp_path, "is a directory"),
                       (tmp_path / "no" / "x.h5", "no such directory")):
        assert cli.main([*RUN, flag, str(bad)]) == 2
        err = capsys.readouterr().err
        assert f"{flag} {bad}: {words}" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing left
    for empty in ("", "-") if flag == "--trace" else ("",):
        assert cli.main([*RUN, flag, empty]) == 2
        assert flag in capsys.readouterr().err


def test_two_outputs_onto_one_file_are_refused(tmp_path: Path, capsys) -> None:
    p = tmp_path / "x"
    assert cli.main([*RUN, "--json", str(p), "--trace", str(p)]) == 2
    assert "the same file as --json" in capsys.readouterr().err and not p.exists()


def test_nothing_is_left_behind_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("kept")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "kept" and sorted(tmp_path.iterdir()) == [target]


def test_stale_temporary_files_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "run.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".run.h5.{dead}.abc.part"
    live = tmp_path / f".run.h5.{os.getpid()}.def.part"  # a writer still running (us)
    other = tmp_path / f".other.{dead}.x.part"
    for p in (stale, live, other):
        p.write_text("")
    write_text(target, "new")
    assert not stale.exists() and live.exists() and other.exists()
    staged = Staged(target)
    assert staged.tmp.name.startswith(f".run.h5.{os.getpid()}.")
    staged.discard()


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"),
                                        ("svg", b"<?xml")])
def test_figures_follow_the_extension(tmp_path: Path, ext: str, magic: bytes) -> None:
    out = tmp_path / f"f.{ext}"
    write_figure(_figure(), out, {"Title": "t", "Description": '{"memwall_version": "x"}'})
    data = out.read_bytes()
    assert data.startswith(magic)
    if ext != "png":
        assert b"memwall" in data  # the creator and the provenance travel in the file


def test_png_metadata_carries_the_provenance(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "f.png"
    write_figure(_figure(), out, {"Title": "t", "Description": '{"hierarchy": "hbm_accel"}'})
    info = Image.open(out).info
    assert info["Software"] == f"memwall {memwall.__version__}"
    assert json.loads(info["Description"]) == {"hierarchy": "hbm_accel"}


def test_an_unknown_figure_format_is_refused_before_drawing(tmp_path: Path) -> None:
    with pytest.raises(MemwallError, match=r"unknown figure format \.jpg; expected a file "
                                           r"ending in \.png, \.pdf, \.svg"):
        write_figure(_figure(), tmp_path / "f.jpg")
    assert list(tmp_path.iterdir()) == []


def test_figure_functions_never_change_the_global_backend(tmp_path: Path) -> None:
    from memwall import paper
    from memwall.sweep_results import sweep_figure
    from memwall.validation import parity_figure

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend the old code would have switched away from
    try:
        data = paper.load_fig1()
        figs = [paper.plot_fig1(data, paper.fig1(data)),
                parity_figure({"engine": "des", "mape_in_sample": {"overall": 10.0, "h": 10.0},
                               "mape_leave_one_source_out": {"overall": 10.0, "h": 10.0},
                               "points": [{"hier": "h", "predicted_loso": 1.0, "measured": 1.1,
                                           "role": "validation"}]}),
                sweep_figure([], {})]
        for i, fig in enumerate(figs):
            write_figure(fig, tmp_path / f"{i}.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
