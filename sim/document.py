"""Config documents: a YAML file's located tree, the overrides applied to it, and rebuilding.

Hierarchy files and runtime files are both read this way: found by bare name in search
folders or by path, decoded, composed into located `Node`s (sim/yamlfile.py), edited by
dotted-path overrides ("memory.l2.capacity=256 MiB", located as "--set ..."), and handed to a
`build` function that validates and constructs the frozen config. A `Document` remembers the
tree and the overrides so far, so a built config can be overridden again (`rebuild`) with
the same checks and messages, and says where it came from (path, sha256 of the bytes).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from sim.errors import SHOWN_CHARS, MemwallError, cut
from sim.yamlfile import FileError, Node, compose

T = TypeVar("T")
Build = Callable[[Node, str, str], Any]  # (root, path, stem) -> the frozen config


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a kind of document is called and how it is built."""

    what: str  # "hierarchy", "runtime"
    error: type[MemwallError]  # raised with every one-line message
    build: Build
    example: str  # a bundled name, for "not found" messages
    keys: str  # what an empty file lacks, for its message
    readme: str  # where the schema is documented

    @contextmanager
    def errors(self) -> Iterator[None]:
        """The located checks raise FileError; callers catch this kind's error type."""
        try:
            yield
        except self.error:
            raise
        except FileError as e:
            raise self.error(str(e)) from None


class Document(Generic[T]):
    """A config's located tree and where it came from: what `override` rebuilds from
    (overrides edit a copy of the tree; the file is never read again)."""

    def __init__(self, kind: Kind, root: Node, path: str, stem: str, sha256: str,
                 overrides: tuple[str, ...] = (), origins: tuple[str, ...] = ()) -> None:
        self.kind, self.root, self.path, self.stem, self.sha256 = kind, root, path, stem, sha256
        self.overrides, self.origins = overrides, origins

    def rebuild(self, overrides: Sequence[str], origins: Sequence[str] = (),
                first: bool = False) -> T:
        """The config with this document's overrides and then `overrides` applied (each
        override names its origin in errors: `origins[i]`, else "--set PATH=VALUE"); its
        `sha256`, `overrides` and `source` fields are filled in. `first`: `overrides` go
        before this document's own (a runtime's device entry, under the user's --set)."""
        overrides = tuple(overrides)
        origins = tuple(origins)[:len(overrides)]
        origins += tuple(f"--set {cut(t, 2 * SHOWN_CHARS)}" for t in overrides[len(origins):])
        every, where = self.overrides + overrides, self.origins + origins
        if first:
            every, where = overrides + self.overrides, origins + self.origins
        with self.kind.errors():
            built = self.kind.build(_override(self.root, every, where, self.kind), self.path,
                                    self.stem)
        later = Document(self.kind, self.root, self.path, self.stem, self.sha256, every, where)
        return dataclasses.replace(built, sha256=self.sha256, overrides=every, source=later)


def overrides_of(changes: Mapping[str, Any] | Sequence[str] | str
                 ) -> tuple[list[str], list[str]]:
    """("PATH=VALUE" texts, their origins) of `changes`: a mapping {"memory.l2.capacity":
    "512 MiB"} (values as the file takes them: strings with units, numbers, lists), located
    as "override PATH=VALUE", or "PATH=VALUE" texts (origins left to `rebuild`: "--set")."""
    if isinstance(changes, str):
        return [changes], []
    if isinstance(changes, Mapping):
        texts = [f"{k}={_yaml_text(v)}" for k, v in changes.items()]
        return texts, [f"override {cut(t, 2 * SHOWN_CHARS)}" for t in texts]
    return list(changes), []


def _yaml_text(value: Any) -> str:
    """A Python value as the YAML text --set would take for it (strings as they are)."""
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return text.removesuffix("...\n").strip()  # a scalar dumps as "0.9\n...\n"


def load(kind: Kind, name_or_path: str | os.PathLike[str], search_dirs: Sequence[Path] = (),
         overrides: Sequence[str] = (), origins: Sequence[str] = ()) -> Any:
    """Read a file (a bare name is looked up in `search_dirs`), apply overrides, build."""
    path, data = _read(kind, name_or_path, search_dirs)
    text = _decode(kind, data, path)
    doc = Document(kind, _located(kind, text, lambda line: f"{path}:{line}"), path,
                   Path(path).stem, hashlib.sha256(data).hexdigest())
    return doc.rebuild(overrides, origins)


def parse(kind: Kind, text: str, name: str, overrides: Sequence[str] = (),
          origins: Sequence[str] = ()) -> Any:
    """A config from YAML text (no file); errors name it as `<name>:<line>`."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    doc = Document(kind, _located(kind, text, lambda line: f"{name}:{line}"), "", name, sha)
    return doc.rebuild(overrides, origins)


def from_data(kind: Kind, data: Mapping[str, Any], name: str, overrides: Sequence[str] = (),
              origins: Sequence[str] = ()) -> Any:
    """A config from a mapping shaped like the file (values as the file takes them:
    strings with units, numbers, lists); errors name `<name>:<line>` of the mapping written
    out as YAML, and the key path."""
    try:
        text = yaml.safe_dump(_plain_data(data), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as e:
        raise kind.error(f"{name}: not plain data (mappings, lists, strings, numbers): "
                         f"{str(e).splitlines()[0]}") from None
    return parse(kind, text, name, overrides, origins)


def _plain_data(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain_data(v) for v in x]
    return x


def _located(kind: Kind, text: str, locate: Callable[[int], str]) -> Node:
    with kind.errors():
        root = compose(text, locate, "")
    if root is None or root.value is None:
        raise kind.error(f"{locate(1)}: empty file; expected a {kind.what} with {kind.keys} "
                         f"(see {kind.readme})")
    return root


def _read(kind: Kind, name_or_path: str | os.PathLike[str], search_dirs: Sequence[Path]
          ) -> tuple[str, bytes]:
    given = os.fspath(name_or_path)
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    if any(s in given for s in seps):
        candidates = [Path(given)]
    else:
        names = [given] if given.endswith((".yaml", ".yml")) else [f"{given}.yaml", given]
        candidates = [Path(d) / n for d in search_dirs for n in names] + [Path(n) for n in names]
    for candidate in candidates:
        try:
            return str(candidate), candidate.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        except OSError as e:
            raise kind.error(f"{candidate}: cannot read {kind.what} file: {e.strerror}") from None
    where = ", ".join(str(d) for d in search_dirs) or "no search directories"
    raise kind.error(f'{kind.what} "{cut(given)}" not found (looked in {where} and the current '
                     f"directory); expected a bundled name such as {kind.example} or a path")


def _decode(kind: Kind, data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise kind.error(f"{path}:{line}: not UTF-8 text") from None


def _override(root: Node, overrides: Sequence[str], origins: Sequence[str], kind: Kind) -> Node:
    root = copy.deepcopy(root)
    for i, text in enumerate(overrides):
        where = origins[i] if i < len(origins) else f"--set {text}"
        key, sep, value = text.partition("=")
        segments = key.strip().split(".")
        if not sep or not all(segments):
            raise kind.error(f"{where}: expected PATH=VALUE such as memory.l2.capacity=256 MiB")
        new = compose(value, lambda _line, w=where: w, key.strip()) or Node(None, where)
        _set(root, segments, new, where, kind)
    return root


def _set(root: Node, segments: list[str], new: Node, where: str, kind: Kind) -> None:
    node = root
    for depth, seg in enumerate(segments):
        path, last = ".".join(segments[: depth + 1]), depth == len(segments) - 1
        if isinstance(node.value, dict):
            if last:
                new.key_where = where
                node.value[seg] = new
                return
            if seg not in node.value or node.value[seg].value is None:
                node.value[seg] = Node({}, where, where)
            node = node.value[seg]
        elif isinstance(node.value, list):
            names = [e.value["name"].value for e in node.value
                     if isinstance(e.value, dict) and "name" in e.value]
            if seg not in names:
                close = difflib.get_close_matches(seg, [str(n) for n in names], n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise kind.error(f'{where}: {path}: no entry named "{cut(seg)}"; {hint}'
                                 f"expected one of {', '.join(map(str, names))}")
            index = names.index(seg)
            if last:
                node.value[index] = new
                return
            node = node.value[index]
        else:
            raise kind.error(f"{where}: {path}: {'.'.join(segments[:depth])} is a single "
                             "value, not a section; expected a path such as memory.l2.capacity")
