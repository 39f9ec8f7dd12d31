"""Output files that appear whole or not at all, and the version that wrote them.

Every file memwall writes (JSON summaries, traces, plots, sweep points and tables) is written
under a hidden name beside its target and renamed onto it only when complete, so a killed run
never leaves a file that looks whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from .errors import MemwallError


def memwall_version() -> str:
    try:
        return metadata.version("memwall")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def temporary_path(target: Path) -> Path:
    """A new empty hidden file beside `target`, to be renamed onto it when complete."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                   dir=target.parent if str(target.parent) else ".")
    except OSError as e:
        raise MemwallError(f"{target}: cannot write here ({e.strerror})") from None
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, target: Path) -> None:
    """Give the finished `tmp` the permissions of a newly created file and rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


@contextmanager
def replacing(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `target` if the block succeeds and is
    removed if it raises."""
    target = Path(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Replace `target` with `text`, durably, so that no reader ever sees part of it."""
    with replacing(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
