"""The SQLite files behind the search cache and the page store: read-only replay, damage, errors naming
the file (:mod:`arpo_env.envs.sqlite_file`)."""
from __future__ import annotations

import logging
import os
import random
import stat
from pathlib import Path

import pytest

from arpo_env.envs.browse.page import FetchError, Page
from arpo_env.envs.browse.store import PageStore, StoreFetcher
from arpo_env.envs.search.base import Hit
from arpo_env.envs.search.cache import CachedBackend, SearchCache
from arpo_env.envs.search.tool import SearchConfig, SearchTool, build_backend
from arpo_env.envs.sqlite_file import SQLiteFileError

N = 300


class Live:
    name = "fake"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def search(self, query: str, k: int) -> list[Hit]:
        self.asked.append(query)
        return [Hit("live", f"live answer for {query}")]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _filled(path: Path, n: int = N) -> None:
    cache = SearchCache(path)
    for i in range(n):
        cache.put("fake", f"query {i}", 5, [Hit(f"t{i}", "x" * 800 + f" {i}")])
    cache.close()


def _damage(path: Path) -> None:
    """Random bytes over 16 kB in the middle of the file (several pages)."""
    size = path.stat().st_size
    assert size > 100_000  # enough pages that the middle is table and index pages
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(random.Random(7).randbytes(16384))


def _warnings_naming(caplog, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder with a recorded cache, then made read-only (file 0444, folder 0555; restored after)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    cache = SearchCache(folder / "c.sqlite")
    cache.put("ddgs", "capital of france", 5, [Hit("Paris", "Paris is the capital of France.")])
    cache.close()
    del cache
    (folder / "c.sqlite").chmod(0o444)
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
    (folder / "c.sqlite").chmod(0o644)


def test_replay_only_reads_a_read_only_folder_and_changes_nothing(read_only_folder):
    # as root, chmod does not stop writes: the snapshot (names, bytes, mtimes) is what proves nothing changed
    before = _snapshot(read_only_folder)
    assert list(before) == ["c.sqlite"]
    backend = build_backend(SearchConfig(backend="replay", cache_path=str(read_only_folder / "c.sqlite")))
    tool = SearchTool(backend)
    assert tool("capital of France").text == "Page 1: Paris: Paris is the capital of France."
    missing = tool("who wrote hamlet")
    assert missing.error and "not in the search cache" in missing.text and str(read_only_folder) in missing.text
    assert isinstance(backend, CachedBackend) and backend.cache is not None and backend.cache.read_only
    assert "immutable=1" in backend.cache._db._uri  # no -wal/-shm needed, none made
    assert _snapshot(read_only_folder) == before
    with pytest.raises(SQLiteFileError, match=str(read_only_folder / "c.sqlite")):
        backend.cache.put("ddgs", "x", 5, [])  # read-only: no writes, and the error names the file


def test_a_read_only_cache_must_exist(tmp_path):
    with pytest.raises(SQLiteFileError, match=r"no\.sqlite: no such search cache.*record it first"):
        SearchCache(tmp_path / "no.sqlite", read_only=True)
    assert not (tmp_path / "no.sqlite").exists()


def test_a_damaged_cache_is_reported_once_kept_aside_and_started_afresh(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    _filled(path)
    _damage(path)
    live = Live()
    tool = SearchTool(CachedBackend(live, SearchCache(path), "read-write"))
    with caplog.at_level(logging.WARNING):
        results = [tool(f"query {i}") for i in range(N)]
        again = [tool(f"query {i}") for i in range(N)]
    assert not any(r.error for r in results + again)  # the run went on
    (msg,) = _warnings_naming(caplog, path)  # once, by path, even after 600 searches
    assert "damaged" in msg and "corrupt-" in msg
    assert live.asked  # the damage was found and those queries went live
    assert all(f" {i}" in r.text or f"live answer for query {i}" in r.text for i, r in enumerate(again))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.sqlite.corrupt-")
             and not p.name.endswith("-wal")]
    assert aside and aside[0].stat().st_size > 100_000  # the damaged bytes are kept
    assert len(SearchCache(path)) >= len(set(live.asked))  # the fresh cache records again


def test_a_damaged_cache_in_replay_only_mode_is_an_error_naming_the_file(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    _filled(path)
    _damage(path)
    before = _snapshot(tmp_path)
    tool = SearchTool(CachedBackend(None, SearchCache(path, read_only=True), "replay-only", backend_name="fake"))
    with caplog.at_level(logging.WARNING):
        results = [tool(f"query {i}") for i in range(N)]
    errors = [r for r in results if r.error]
    assert errors and all(str(path) in r.text and "damaged" in r.text for r in errors)
    assert "cannot be replayed" in errors[0].text
    assert len(_warnings_naming(caplog, path)) == 1
    # nothing moved aside, nothing reset (a writable folder gets SQLite's -wal/-shm side files, as any reader's)
    assert not [p for p in tmp_path.iterdir() if "corrupt" in p.name]
    assert path.read_bytes() == before["c.sqlite"][0]


def test_a_file_that_is_not_a_database_is_replaced_in_read_write_mode(tmp_path, caplog):
    path = tmp_path / "pages.sqlite"
    path.write_bytes(os.urandom(8192))
    with caplog.at_level(logging.WARNING):
        store = PageStore(path)
    assert len(_warnings_naming(caplog, path)) == 1 and len(store) == 0
    store.put("https://example.org/a", Page(url="https://example.org/a", title="A", text="alpha"))
    assert store.get("https://example.org/a").text == "alpha"


def test_page_store_replays_read_only_and_names_a_damaged_file(tmp_path, caplog):
    path = tmp_path / "pages.sqlite"
    store = PageStore(path)
    store.put("https://example.org/a", Page(url="https://example.org/a", title="A", text="alpha"))
    store.close()  # the last connection: SQLite checkpoints the WAL into the file and removes it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages.sqlite"]
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        replay = StoreFetcher(PageStore(path, read_only=True))
        assert replay.fetch("https://example.org/a").text == "alpha"
    finally:
        path.chmod(0o644)
    path.write_bytes(b"garbage" * 2000)
    with caplog.at_level(logging.WARNING):
        broken = StoreFetcher(PageStore(path, read_only=True))  # constructing is fine: each fetch says why
        for _ in range(3):
            with pytest.raises(FetchError, match=f"{path}.*damaged"):
                broken.fetch("https://example.org/a")
    assert len(_warnings_naming(caplog, path)) == 1
