"""The distribution: a wheel that works from any directory in a fresh virtualenv, import
packages with no cycles, the console script's --version and list, a closed stdout."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import networkx as nx
import pytest

import memwall
import workloads
from memwall import bundled, calibration

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("memwall", "sim", "workloads")
# function-level imports are for optional heavy libraries only (and the command line, which
# loads the library per command so that --version and -h start at once)
LAZY_OK = {"h5py", "matplotlib", "distributed", "tqdm", "importlib", "PIL",  # and submodules
           "torch", "triton", "pynvml"}  # memwall measure: a GPU
LAZY_MODULES = {"sim.trace_file", "memwall.measure.cuda"}  # load h5py; torch


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> tuple[set[str], list[tuple[str, str]]]:
    """(modules imported at module level, [(function, module) imported inside functions])."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def target(n: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(n, ast.Import):
            return [a.name for a in n.names]
        base = n.module or ""
        if n.level:
            up = package.split(".")[: len(package.split(".")) - (n.level - 1)]
            base = ".".join([*up, *([base] if base else [])])
        return [base] + [f"{base}.{a.name}" for a in n.names]

    top: set[str] = set()
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            top.update(target(n))
    inner = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    inner.append((fn.name, target(n)[0]))
    return top, inner


def test_imports_run_one_way_without_cycles() -> None:
    mods = _modules()
    G = nx.DiGraph()
    for name, path in mods.items():
        top, _ = _imports(name, path)
        G.add_node(name)
        G.add_edges_from((name, m) for m in top if m in mods and m != name)
    assert nx.is_directed_acyclic_graph(G), nx.find_cycle(G)
    for a, b in G.edges:
        assert not (a.startswith("sim") and b.startswith(("workloads", "memwall"))), (a, b)
        assert not (a.startswith("workloads") and b.startswith("memwall")), (a, b)


def test_function_level_imports_are_only_for_heavy_optional_libraries() -> None:
    for name, path in _modules().items():
        if name == "memwall.cli":
            continue
        for fn, module in _imports(name, path)[1]:
            ok = module.split(".")[0] in LAZY_OK or module in LAZY_MODULES
            assert ok, f"{path.relative_to(ROOT)}: {fn} imports {module}"


def test_figures_never_import_pyplot(tmp_path: Path) -> None:
    code = ("import sys, memwall; from memwall import paper; from sim.outfile import "
            "write_figure; d = paper.load_fig1(); write_figure(paper.plot_fig1(d, paper.fig1(d)),"
            f" {str(tmp_path / 'f.png')!r}); assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def _memwall(*argv: str, cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memwall", *argv], cwd=cwd, text=True,
                          capture_output=True, **kw)


def test_version_and_list(tmp_path: Path) -> None:
    out = _memwall("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"memwall {memwall.__version__}"
    listing = _memwall("list", cwd=tmp_path).stdout.splitlines()
    names = [line.split()[0] for line in listing if line.startswith("  ")]
    assert names == [*workloads.PRESETS, *(p.name for p in bundled.hierarchy_files()),
                     *(p.stem for p in bundled.runtime_files())]
    hbm = next(line for line in listing if line.startswith("  hbm_accel.yaml"))
    assert "generic H100-class HBM accelerator" in hbm
    assert "124,439,808 parameters" in next(x for x in listing if x.startswith("  gpt2 "))


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "memwall", "--workload", "gpt2", "--hier",
                             "hbm_accel", "--prompt-len", "4", "--gen-len", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (| head -0)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == b""


def test_the_checkout_shim_is_the_console_script(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--version"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.stdout.strip() == f"memwall {memwall.__version__}"
    body = ast.parse((ROOT / "run.py").read_text()).body
    assert len(body) == 4 and isinstance(body[0].value, ast.Constant)  # docstring + 3 lines


@pytest.mark.slow
def test_a_wheel_works_in_a_fresh_virtualenv_from_any_directory(tmp_path: Path) -> None:
    """Build the wheel, install it (alone: its dependencies come from this environment
    through a path file, so no download is needed) into a new virtualenv, and from a
    directory outside the checkout run the main job by bare hierarchy name, and validate."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = dist.glob("memwall_sim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == set(PACKAGES)  # no top-level run, sweep, validate or paper modules
    assert "memwall/bundled/hierarchies/hbm_accel.yaml" in names
    assert "memwall/bundled/validation/measured.csv" in names
    assert "memwall/bundled/sweeps/tiered_dram.yaml" in names
    assert "memwall/bundled/runtimes/tensorrt-llm.yaml" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "outer_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([py, "-c", "import memwall, memwall.bundled as b; "
                            "print(memwall.__file__); print(b.folder('hierarchies'))"],
                           cwd=away, env=env, check=True, capture_output=True, text=True)
    module, folder = where.stdout.split()
    assert module.startswith(str(venv)) and folder.startswith(str(venv)), where.stdout
    memwall_bin = venv / "bin" / "memwall"
    job = subprocess.run([memwall_bin, "--workload", "gpt2", "--hier", "hbm_accel.yaml",
                          "--gen-len", "4"], cwd=away, env=env, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr
    assert "memwall: gpt2 on hbm_accel" in job.stdout and "verdict: memory-bound" in job.stdout
    # the bundled measurements, calibration and its results load from the wheel; two rows of
    # them run (the whole set takes a minute and a half)
    rows = (bundled.folder("validation") / "measured.csv").read_text().splitlines()
    two = tmp_path / "two.csv"
    two.write_text("\n".join(rows[:3]) + "\n")
    found = subprocess.run([venv / "bin" / "python", "-c",
                            "from memwall import calibration as c, validation as v; "
                            "print(len(v.load_points()), len(c.read_figures()), "
                            "c.read_results(c.read_figures()) is not None)"],
                           cwd=away, env=env, check=True, capture_output=True, text=True)
    assert found.stdout.split() == [str(len(rows) - 1),  # one line a row
                                    str(len(calibration.read_figures())),
                                    "True"]
    val = subprocess.run([memwall_bin, "validate", "--engine", "analytic", "--csv", two],
                         cwd=away, env=env, capture_output=True, text=True)
    assert val.returncode == 0, val.stderr
    assert any(x.startswith("  overall ") for x in val.stdout.splitlines()), val.stdout
    assert sorted(p.name for p in away.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize("flag", ["--version", "-h"])
def test_version_and_help_import_nothing_heavy(flag: str, tmp_path: Path) -> None:
    """`memwall --version` and `-h` start as fast as Python does: no numpy, networkx, yaml,
    simpy or library module, and -h not even the installed metadata (email, zipfile)."""
    heavy = ["numpy", "networkx", "yaml", "simpy", "h5py", "dask", "workloads",
             "memwall.inputs", "memwall.simulation", "sim.summary"]
    if flag == "-h":
        heavy.append("importlib.metadata")
    code = (f"import sys; from memwall import cli; code = 0\ntry: cli.main([{flag!r}])\n"
            f"except SystemExit as e: code = e.code\nprint(sorted(set({heavy!r}) & "
            "set(sys.modules)), code)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[] 0", out


def test_an_analytic_run_never_loads_simpy() -> None:
    code = ("import sys, memwall; r = memwall.simulate('gpt2', 'hbm_accel', prompt_len=1, "
            "gen_len=2, engine='analytic'); print(r.n_ops > 0, 'simpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True,
                         capture_output=True, check=True).stdout
    assert out.split() == ["True", "False"], out
