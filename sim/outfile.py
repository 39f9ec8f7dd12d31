"""Output files that appear whole or not at all, and the version that wrote them.

Every file memwall writes (JSON summaries, traces, figures, sweep points and tables) is
written under a hidden name beside its target and renamed onto it only when complete, so a
killed run never leaves a file that looks whole. What the target is decides the rest:

    missing or a regular file   replaced atomically (os.replace of the finished file)
    a symlink                   its target is replaced atomically; the link stays
    a device or a FIFO          written through: the finished bytes are copied into it (a
                                rename would replace /dev/null with a regular file)
    a directory, '' or a path   refused, before any work (`check_target`)
    in a missing directory

A temporary name carries its writer's process id (".run.h5.<pid>.<random>.part"); the next
write to the same target removes those whose writer is gone (killed with kill -9).
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import MemwallError

DISTRIBUTION = "memwall-sim"


def memwall_version() -> str:
    from importlib import metadata  # loads email and friends: only when a version is asked

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def check_target(target: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse an output path that can never be written, before any work: empty, a
    directory, or in a directory that does not exist. `what` names it ("--json")."""
    text = os.fspath(target)
    if not text:
        raise MemwallError(f"{what}: an empty path; expected a file path")
    path = Path(os.path.realpath(text))  # a symlink's target is what gets replaced
    if path.is_dir():
        raise MemwallError(f"{what} {text}: is a directory; expected a file path")
    if not path.parent.is_dir():
        raise MemwallError(f"{what} {text}: no such directory {path.parent}; expected a path "
                           "in an existing directory")
    if not os.access(path.parent, os.W_OK | os.X_OK) and not _special(path):
        raise MemwallError(f"{what} {text}: directory {path.parent} is not writable")
    return path


def _special(path: Path) -> bool:
    """A device, FIFO or socket: written through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class Staged:
    """One output being written: write `tmp`, then `commit()` (or `discard()`)."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.given = os.fspath(target)
        self.target = check_target(target)
        self.special = _special(self.target)
        folder = Path(tempfile.gettempdir()) if self.special else self.target.parent
        if not self.special:
            _clean_stale(self.target)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.{os.getpid()}.",
                                       suffix=".part", dir=folder)
        except OSError as e:
            raise MemwallError(f"{self.given}: cannot write here ({e.strerror})") from None
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        """Put the finished temporary file in place (see the module docstring)."""
        try:
            if self.special:
                with open(self.tmp, "rb") as src, open(self.target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                self.tmp.unlink(missing_ok=True)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.tmp, 0o666 & ~umask)
                os.replace(self.tmp, self.target)
        except OSError as e:
            self.discard()
            raise MemwallError(f"{self.given}: cannot write: {e.strerror or e}") from None
        return self.target

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def _clean_stale(target: Path) -> None:
    """Remove temporary files of `target` left by writers that no longer run."""
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        pid = part.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def replacing(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `target` if the block succeeds and is
    removed if it raises. An OSError while writing names the target, not the temporary."""
    staged = Staged(target)
    try:
        yield staged.tmp
    except OSError as e:
        staged.discard()
        raise MemwallError(f"{staged.given}: cannot write: {e.strerror or e}") from None
    except BaseException:
        staged.discard()
        raise
    staged.commit()


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Replace `target` with `text`, durably, so that no reader ever sees part of it."""
    with replacing(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_format(target: str | os.PathLike[str], what: str = "figure") -> str:
    """The format a figure is written in: its file's extension, one of FIGURE_FORMATS."""
    ext = Path(os.fspath(target)).suffix.lower().lstrip(".")
    if ext not in FIGURE_FORMATS:
        raise MemwallError(f"{what} {os.fspath(target)}: unknown figure format "
                           f"{'.' + ext if ext else '(no extension)'}; expected a file ending "
                           f"in {', '.join('.' + f for f in FIGURE_FORMATS)}")
    return ext


def write_figure(fig: object, target: str | os.PathLike[str], metadata: dict[str, str] | None
                 = None, dpi: int = 120) -> None:
    """Save a matplotlib Figure to `target` in the format of its extension, atomically, with
    `metadata` (a title and memwall's provenance) in the file. The figure is not changed."""
    fmt = figure_format(target)
    meta = _figure_metadata(fmt, metadata or {})
    with replacing(target) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)  # type: ignore[attr-defined]


def _figure_metadata(fmt: str, given: dict[str, str]) -> dict[str, str | None]:
    """matplotlib's metadata keys differ per format; provenance goes in the description."""
    creator = f"memwall {memwall_version()}"
    title, description = given.get("Title", ""), given.get("Description", "")
    if fmt == "png":
        return {"Software": creator, "Title": title, "Description": description}
    if fmt == "pdf":  # no CreationDate: identical inputs give identical files
        return {"Creator": creator, "Title": title, "Subject": description,
                "CreationDate": None}
    return {"Creator": creator, "Title": title, "Description": description, "Date": None}
