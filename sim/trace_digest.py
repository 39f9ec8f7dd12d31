"""Checksums of a trace (sim.trace_file): a sha256 of every dataset, kept in its `sha256`
attribute, and one over the root attributes and those digests, kept in the root's `sha256`.

HDF5's fletcher32 guards each chunk of the big tables against damage on disk; these digests
also cover what fletcher32 does not: the root attributes (the summary, the hierarchy) and the
small tables (/lookup, /ops, /levels), so that a flipped digit anywhere is refused by name.

    >>> h = Digest(); h.update(np.arange(3, dtype=np.int64)); h.hexdigest()[:12]
    'ab25350e3e65'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

ATTR = "sha256"


class Digest:
    """sha256 of a dataset's values as stored: numbers as their bytes, strings each as its
    UTF-8 length and bytes; a dataset written in pieces digests as if written at once."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, values: Any) -> None:
        a = np.asarray(values)
        if a.dtype.kind in "OSU":
            for v in a.ravel():
                b = v if isinstance(v, bytes) else str(v).encode("utf-8")
                self._h.update(len(b).to_bytes(8, "little") + b)
        else:
            self._h.update(np.ascontiguousarray(a).tobytes())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def of(values: Any) -> str:
    h = Digest()
    h.update(values)
    return h.hexdigest()


def root(attrs: Mapping[str, Any], datasets: Mapping[str, str]) -> str:
    """The root digest: every root attribute but ATTR (as text) and every dataset's digest,
    in name order."""
    h = hashlib.sha256()
    for k in sorted(attrs):
        if k != ATTR:
            v = attrs[k]
            text = str(int(v)) if isinstance(v, (int, np.integer)) else str(v)
            h.update(f"attr {k}={text}\n".encode("utf-8", "surrogatepass"))
    for name in sorted(datasets):
        h.update(f"data {name}={datasets[name]}\n".encode())
    return h.hexdigest()
