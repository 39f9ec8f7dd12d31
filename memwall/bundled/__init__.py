"""The data memwall ships: hierarchy files, runtime files, validation data and example sweeps.

In a checkout they are the folders beside the packages (`hierarchies/`, `runtimes/`,
`validation/`, `sweeps/`); a wheel carries the same folders inside this package (pyproject.toml maps
`memwall.bundled.hierarchies` to `hierarchies/`, and so on). `folder` finds whichever is
there, so an installed wheel works from any directory as well as the checkout does.

    >>> (folder("hierarchies") / "hbm_accel.yaml").is_file()
    True
"""

from __future__ import annotations

import re
from pathlib import Path

from sim.errors import MemwallError

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent  # memwall/bundled -> memwall -> the project's root
FOLDERS = ("hierarchies", "runtimes", "validation", "sweeps")
_DESCRIPTION = re.compile(r"^description:\s*(.+?)\s*$", re.MULTILINE)


def folder(name: str) -> Path:
    """The bundled folder `name` (one of FOLDERS): inside the installed package, or in the
    checkout beside it."""
    if name not in FOLDERS:
        raise ValueError(f"no bundled folder {name!r}; expected one of {', '.join(FOLDERS)}")
    for candidate in (HERE / name, CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    raise MemwallError(f"bundled folder {name!r} not found in {HERE} or {CHECKOUT}; "
                       "expected an intact memwall installation (reinstall it)")


def hierarchy_files() -> list[Path]:
    """Every bundled hierarchy file, by name."""
    return sorted(folder("hierarchies").glob("*.yaml"))


def runtime_files() -> list[Path]:
    """Every bundled runtime file, by name."""
    return sorted(folder("runtimes").glob("*.yaml"))


def describe_file(path: Path) -> str:
    """The `description:` line of a bundled YAML file, without parsing it, or ''."""
    m = _DESCRIPTION.search(path.read_text(encoding="utf-8"))
    return m.group(1).strip("\"'") if m else ""
