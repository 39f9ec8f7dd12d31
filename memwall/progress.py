"""Progress on stderr for the commands that run longer than a couple of seconds (a sweep,
`memwall validate`, `memwall paper`): a tqdm bar with time left when the stream is a terminal,
else a plain line every EVERY_S seconds and at the end (a log gets lines, not bars). The
command line shows it only on a terminal; from Python it shows when asked for.

    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(2, "run", "fig3", stream=out) as done:
    ...     done(); done(ok=False)
    >>> out.getvalue().startswith("fig3: 2/2 runs, 1 failed, ")
    True
    >>> with Progress(2, show=False, stream=out) as done:  # shows nothing
    ...     done()
"""

from __future__ import annotations

import sys
import time
from typing import Any

EVERY_S = 5.0  # plain progress line period when the stream is not a terminal


class Progress:
    """Count `total` things (`unit`s) done for the task `name`; call it as each finishes."""

    def __init__(self, total: int, unit: str = "point", name: str = "sweep", *,
                 show: bool = True, stream: Any = None) -> None:
        self.total, self.unit, self.name, self.show = total, unit, name, show
        self.done = self.failed = 0
        self.stream = stream or sys.stderr
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if show and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=name, file=self.stream,
                            dynamic_ncols=True, leave=False)

    def __call__(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        if not self.show:
            return
        if self.bar is not None:
            self.bar.update()
            if self.failed:
                self.bar.set_postfix(failed=self.failed, refresh=False)
        elif time.monotonic() - self.last >= EVERY_S or self.done == self.total:
            self.last = time.monotonic()
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return (f"{self.name}: {self.done}/{self.total} {self.unit}s, {self.failed} failed, "
                f"{elapsed:.0f} s elapsed, about {left:.0f} s left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
