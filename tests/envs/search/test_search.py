"""Search: formatting, the BM25 backend and its disk cache, the SQLite cache modes, and arpo/Search-v0."""
from __future__ import annotations

import json
import multiprocessing as mp
import os

import gymnasium as gym
import pytest

import arpo_env
from arpo_env import check_fork
from arpo_env.envs.search.base import Hit, SearchError, format_hits, normalize_query, parse_pages, truncate
from arpo_env.envs.search.bm25 import BM25Backend
from arpo_env.envs.search.cache import CacheMode, CachedBackend, SearchCache, import_arpo_cache
from arpo_env.envs.search.corpus import Passage, corpus_hash, load_corpus, load_hotpotqa_questions, write_jsonl_gz
from arpo_env.envs.search.env import SearchEnv, recall_at_k
from arpo_env.envs.search.tool import SearchTool
from tests.helpers.env_checks import strict_check_env
from tests.helpers.shared_data import require_shared_data


TINY = [Passage("a", "Lisbon", "Lisbon is the capital and the largest city of Portugal."),
        Passage("b", "Madrid", "Madrid is the capital of Spain, on the river Manzanares."),
        Passage("c", "Porto", "Porto is a coastal city in northwest Portugal known for port wine."),
        Passage("d", "Oslo", "Oslo is the capital of Norway.")]


# ----- formatting ---------------------------------------------------------------------------------
def test_format_hits_arpo_layout_and_truncation():
    hits = [Hit("Lisbon", "Lisbon is the capital " * 50, url="http://x"), Hit("", "no title here")]
    text = format_hits(hits, snippet_chars=60, show_urls=True)
    lines = text.split("\n")
    assert lines[0].startswith("Page 1: Lisbon: Lisbon is the capital") and lines[0].endswith("… (http://x)")
    assert len(lines[0]) < 60 + len("Page 1: Lisbon: ") + len(" (http://x)") + 1
    assert lines[1] == "Page 2: no title here"
    assert format_hits([]) == "No results found."
    assert format_hits(hits[:1], show_titles=False, snippet_chars=30).startswith("Page 1: Lisbon is")
    assert truncate("short", 100) == "short"


def test_parse_pages_reads_arpo_cache_text():
    text = "Page 1: first snippet …\nPage 2: second\nspans lines\nPage 3: third"
    hits = parse_pages(text)
    assert [h.snippet for h in hits] == ["first snippet …", "second\nspans lines", "third"]
    assert format_hits(hits, show_titles=False, snippet_chars=1000).startswith("Page 1: first snippet …\nPage 2: second spans")


def test_normalize_query():
    assert normalize_query("  Capital\tof  FRANCE \n") == "capital of france"


# ----- BM25 --------------------------------------------------------------------------------------
def test_bm25_ranks_and_filters(tmp_path):
    b = BM25Backend(passages=TINY, index_dir=tmp_path / "idx")
    hits = b.search("largest city of Portugal", 3)
    assert hits[0].title == "Lisbon" and hits[0].id == "a" and hits[0].score > 0
    assert {h.title for h in hits} <= {"Lisbon", "Porto"}  # zero-score passages are never returned
    assert b.search("the of and", 5) == []  # stop words only
    assert b.search("zzzqqq unknownword", 5) == []
    with pytest.raises(SearchError):
        b.search("   ", 5)
    assert len(b.search("capital", 10)) == 3


def test_bm25_index_cached_on_disk_keyed_by_corpus(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    write_jsonl_gz([{"id": p.id, "title": p.title, "text": p.text} for p in TINY], path)
    first = BM25Backend(path)
    assert not first.loaded_from_disk and first.index_dir.is_dir()
    assert str(first.index_dir).startswith(os.environ["ARPO_ENV_CACHE_DIR"])
    second = BM25Backend(path)
    assert second.loaded_from_disk and second.index_dir == first.index_dir
    assert second.search("Norway capital", 2) == first.search("Norway capital", 2)
    other = BM25Backend(passages=TINY[:3])
    assert other.corpus_hash != first.corpus_hash and other.index_dir != first.index_dir
    assert other.name == f"bm25:{corpus_hash(TINY[:3])}"


@pytest.mark.parametrize("damaged", ["data.csc.index.npy", "vocab.tokenizer.json"])
def test_bm25_damaged_index_file_is_reported_and_rebuilt(tmp_path, caplog, damaged):
    """Garbage inside an index file once loaded silently and changed top-10 results; now the file's
    checksum (recorded in arpo_index.json) fails, the path is named once, and the index is rebuilt."""
    import logging
    import shutil

    fresh = BM25Backend(index_dir=tmp_path / "fresh")
    queries = [q["question"] for q in load_hotpotqa_questions()[:10]]
    want = [[h.id for h in fresh.search(q, 10)] for q in queries]
    idx = tmp_path / "idx"
    shutil.copytree(tmp_path / "fresh", idx)
    assert set(json.loads((idx / "arpo_index.json").read_text())["files"]) >= {damaged}
    f = idx / damaged
    data = bytearray(f.read_bytes())
    quarter = len(data) // 4
    data[quarter:2 * quarter] = bytes((b * 7 + 13) % 256 for b in data[quarter:2 * quarter])  # garbage
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="arpo_env.envs.search.bm25"):
        rebuilt = BM25Backend(index_dir=idx)
    warnings = [r.getMessage() for r in caplog.records if r.name == "arpo_env.envs.search.bm25"]
    assert warnings == [f"BM25 index: {f} checksum mismatch (damaged); rebuilding it"]
    assert not rebuilt.loaded_from_disk
    assert [[h.id for h in rebuilt.search(q, 10)] for q in queries] == want
    again = BM25Backend(index_dir=idx)  # the rebuilt index replaced the damaged one on disk
    assert again.loaded_from_disk and [[h.id for h in again.search(q, 10)] for q in queries] == want


def test_load_corpus_rejects_bad_records(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "title": "x", "text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match="record 2"):
        load_corpus(bad)


def test_bundled_corpus_and_recall():
    passages = load_corpus()
    assert len(passages) > 8_500
    questions = load_hotpotqa_questions()
    assert len(questions) == 100
    titles = {p.title for p in passages}
    assert all(t in titles for q in questions for t, _ in q["supporting_facts"])
    from arpo_env.envs.search.tool import shared_bm25
    r = recall_at_k(shared_bm25(), questions, (5, 10))
    assert r["gold_passages"] == 200
    assert r["recall@10"] >= r["recall@5"] >= 0.6  # measured 0.74 / 0.865 (bench/search.py)
    assert r["recall@10"] >= 0.8


# ----- cache -------------------------------------------------------------------------------------
class CountingBackend:
    name = "fake"

    def __init__(self):
        self.calls = 0

    def search(self, query, k):
        self.calls += 1
        return [Hit(f"T{i}", f"{query} {i}") for i in range(k)]


def test_cache_modes(tmp_path):
    cache = SearchCache(tmp_path / "c.sqlite")
    assert cache._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    inner = CountingBackend()
    rw = CachedBackend(inner, cache, "read-write")
    a = rw.search("Capital  of France", 3)
    b = rw.search("capital of france", 3)  # normalised key: served from the cache
    assert a == b and inner.calls == 1 and (rw.hits, rw.misses) == (1, 1)
    assert rw.search("capital of france", 2) == a[:2] and inner.calls == 1  # smaller k from a larger record
    rw.search("capital of france", 5)
    assert inner.calls == 2
    off = CachedBackend(inner, cache, "off")
    off.search("capital of france", 3)
    assert inner.calls == 3
    replay = CachedBackend(None, cache, CacheMode.REPLAY_ONLY, backend_name="fake")
    assert replay.search("CAPITAL OF FRANCE", 3) == a
    with pytest.raises(SearchError, match="replay-only"):
        replay.search("never asked", 3)
    with pytest.raises(ValueError):
        CachedBackend(None, cache, "read-write", backend_name="fake")


def _writer(path, worker, n):
    cache = SearchCache(path)
    for i in range(n):
        cache.put("proc", f"query {worker} {i}", 3, [Hit("t", f"w{worker} i{i}")])


def test_cache_safe_with_several_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    SearchCache(path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = SearchCache(path)
    assert len(cache) == 120
    assert cache.get("proc", "query 2 39", 3)[0].snippet == "w2 i39"


def test_import_arpo_cache(tmp_path):
    src = tmp_path / "arpo.json"
    src.write_text(json.dumps({"Amy Smart debut": "Page 1: one …\nPage 2: two", "q2": "Page 1: x"}))
    cache = SearchCache(tmp_path / "c.sqlite")
    assert import_arpo_cache(src, cache) == 2
    tool = SearchTool(CachedBackend(None, cache, "replay-only", backend_name="arpo-bing"), top_k=5,
                      show_titles=False)
    assert tool("amy smart  DEBUT").text == "Page 1: one …\nPage 2: two"
    miss = tool("something else")
    assert miss.error and "replay-only" in miss.text


def test_import_of_arpo_search_cache_from_the_shared_data(tmp_path):
    real = require_shared_data("search_cache", "search_cache.json")  # skips locally, fails under CI
    cache = SearchCache(tmp_path / "c.sqlite")
    assert import_arpo_cache(real, cache) >= 990
    raw = json.load(open(real))
    query = "Amy Smart film debut Campfire Tales"
    hits = cache.get("arpo-bing", query, 10)
    assert hits and raw[query].startswith("Page 1: " + hits[0].snippet[:40])


# ----- env ---------------------------------------------------------------------------------------
def test_search_env_checks_and_episode():
    env = arpo_env.make("arpo/Search-v0")
    strict_check_env(env)
    report = check_fork(env)
    assert report.fork_kind == "state" and report.deterministic
    prompt, info = env.reset(seed=3)
    assert "<search>" in info["system_prompt"] and prompt == env.episode.task.question
    actions = env.example_actions()
    obs, *_ = env.step(actions[0])
    assert obs.startswith("<result>\nPage 1: ") and "Page 5: " in obs
    child = env.fork()
    assert child.backend is env.backend and child.search_tool is not env.search_tool
    child.step("<search>Lisbon</search>")
    assert env.search_tool.history == [env.episode.task.question] and len(child.search_tool.history) == 2
    obs, _, _, _, info = env.step("<search>   </search>")
    assert info["tool_error"] and "empty" in obs
    _, reward, terminated, _, _ = env.step(actions[-1])
    assert terminated and reward == 1.0
    env.close()


def test_search_env_options_and_gym_make(tmp_path):
    env = gym.make("arpo/Search-v0", top_k=2, snippet_chars=40, max_tool_calls=2)
    env.reset(options={"question": "Where is Porto?", "answer": "Portugal"})
    obs, *_ = env.step("<search>Porto port wine city</search>")
    assert obs.count("Page ") == 2 and all(len(line) < 40 + 80 for line in obs.splitlines())
    with pytest.raises(ValueError):
        SearchEnv(backend="nope")
    with pytest.raises(TypeError):
        SearchEnv(not_an_option=1)
    env.close()


def test_search_env_replay_backend(tmp_path):
    cache = SearchCache(tmp_path / "r.sqlite")
    cache.put("ddgs", "who wrote hamlet", 5, [Hit("Hamlet", "Hamlet is a tragedy by Shakespeare.", url="https://en.wikipedia.org/wiki/Hamlet")])
    env = SearchEnv(backend="replay", cache_path=str(tmp_path / "r.sqlite"), show_urls=True)
    assert env.fork_kind.value == "state" and env.deterministic
    env.reset(options={"question": "Who wrote Hamlet?", "answer": "Shakespeare"})
    obs, *_ = env.step("<search>Who wrote Hamlet</search>")
    assert "Page 1: Hamlet: Hamlet is a tragedy by Shakespeare. (https://en.wikipedia.org/wiki/Hamlet)" in obs
    obs, _, _, _, info = env.step("<search>not recorded</search>")
    assert info["tool_error"] and "replay-only" in obs
    with pytest.raises(ValueError):
        SearchEnv(backend="replay", cache_mode="off")


# ----- CLI ---------------------------------------------------------------------------------------
def test_cli_index_build_and_search(tmp_path):
    import typer
    from typer.testing import CliRunner

    from arpo_env.envs.search import cli

    app = typer.Typer()
    app.command("noop")(lambda: None)
    cli.register(app)
    corpus = tmp_path / "user.jsonl"
    rows = [{"id": p.id, "title": p.title, "text": p.text} for p in TINY] + [{"id": "z", "title": "CLI", "text": "only here"}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    first = runner.invoke(app, ["index", "build", "--corpus", str(corpus)])
    assert first.exit_code == 0, first.output
    info = json.loads(first.output)
    assert info["passages"] == 5 and not info["loaded_from_cache"]
    again = json.loads(runner.invoke(app, ["index", "build", "--corpus", str(corpus)]).output)
    assert again["loaded_from_cache"] and again["index_dir"] == info["index_dir"]
    res = runner.invoke(app, ["search", "capital of Norway", "-k", "1", "--corpus", str(corpus)])
    assert res.exit_code == 0 and res.output.startswith("Page 1: Oslo: Oslo is the capital of Norway.")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no text"}\n')
    res = runner.invoke(app, ["index", "build", "--corpus", str(bad)])
    assert res.exit_code == 2 and "needs a string 'text'" in res.output


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=200)
                .filter(lambda s: s.strip()), min_size=1, max_size=8), st.integers(20, 300))
def test_format_then_parse_keeps_every_hit(snippets, chars):
    hits = [Hit("", s) for s in snippets]
    text = format_hits(hits, snippet_chars=chars, show_titles=False)
    back = parse_pages(text)
    assert len(back) == len(hits)
    for h, b in zip(hits, back):
        assert len(b.snippet) <= chars + 1 and b.snippet == truncate(h.snippet, chars).strip()
