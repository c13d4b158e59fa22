"""The documents the code points to exist and say what is cited: every "ARPO.md section N" (also "s. N",
"s.N", "§N", "sections 3, 4 and 6") in the packages and the README names a section of docs/ARPO.md, and
the LICENSE is the MIT licence that pyproject.toml declares."""
from __future__ import annotations

import re

import pytest

from tests.helpers.shared_data import REPO_ROOT

CITE = re.compile(r"ARPO\.md\s*(?:§|s\.|sections?)\s*(\d+(?:\s*(?:,|and)\s*\d+)*)")
SOURCES = ("arpo_env", "envs", "agents", "benchmarks", "trainers")


def _citations() -> dict[int, list[str]]:
    cited: dict[int, list[str]] = {}
    files = [p for d in SOURCES for p in (REPO_ROOT / d).rglob("*.py")] + [REPO_ROOT / "README.md"]
    for path in files:
        for m in CITE.finditer(path.read_text(encoding="utf-8")):
            for n in re.findall(r"\d+", m.group(1)):
                cited.setdefault(int(n), []).append(str(path.relative_to(REPO_ROOT)))
    return cited


def test_every_cited_section_of_arpo_md_exists():
    doc = (REPO_ROOT / "docs" / "ARPO.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", doc, flags=re.M)}
    cited = _citations()
    assert cited, "no citation found: the pattern no longer matches how the code cites ARPO.md"
    missing = {n: files for n, files in cited.items() if n not in sections}
    assert missing == {}, f"cited sections missing from docs/ARPO.md: {missing}"
    assert sections == set(range(1, max(sections) + 1))  # numbered 1..n without gaps


def test_docs_index_lists_every_document():
    docs = REPO_ROOT / "docs"
    index = (docs / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in sorted(docs.glob("*.md")) if p.name != "README.md" and f"({p.name})" not in index] == []


def test_license_matches_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = meta["license"]["text"] if isinstance(meta["license"], dict) else meta["license"]
    text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert declared == "MIT" and text.startswith("MIT License")
    assert "Copyright (c) 2026 arpo-env contributors" in text
