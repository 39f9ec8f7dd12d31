"""The README's examples run: the Python API block prints exactly the output quoted below it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

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


def test_the_serving_example_prints_what_the_readme_says(tmp_path, monkeypatch) -> None:
    section = _section("Serving")
    (code,), (want,) = _blocks(section, "python"), _blocks(section, "text")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue() == want
