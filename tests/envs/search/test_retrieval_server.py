"""The retrieval server and its client, for real on 127.0.0.1 (over BM25, so no model is needed): Search-R1's
protocol, 64 concurrent trainer-style queries, the server killed mid-run, replay with the server down; the
title linker and the question-set loader."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import arpo_env
from arpo_env import check_fork
from arpo_env.envs.search.base import SearchError
from arpo_env.envs.search.bm25 import BM25Backend
from arpo_env.envs.search.cache import SearchCache
from arpo_env.envs.search.corpus import Passage, load_hotpotqa_questions
from arpo_env.envs.search.env import SearchEnv
from arpo_env.envs.search.evaluate import load_question_set, recall
from arpo_env.envs.search.hybrid import TitleLinker
from arpo_env.envs.search.remote import RemoteBackend, RemoteConfig, parse_document
from arpo_env.envs.search.server import RetrievalServer
from tests.helpers.env_checks import strict_check_env

FAST = {"timeout_s": 3.0, "attempt_timeout_s": 1.0, "retries": 2, "backoff_s": 0.05}


@pytest.fixture(scope="module")
def bm25():
    return BM25Backend()


@pytest.fixture
def server(bm25):
    s = RetrievalServer(bm25, "127.0.0.1", 0, max_wait_ms=20).start()
    yield s
    s.close()


def test_protocol_is_search_r1s(server, bm25):
    r = httpx.post(server.url + "/retrieve", json={"queries": ["Lilu mythology demon", "capital of Portugal"],
                                                    "topk": 3, "return_scores": True}, timeout=10)
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 2 and all(len(row) == 3 for row in result)
    want = bm25.search("Lilu mythology demon", 3)
    first = result[0][0]
    assert set(first) == {"document", "score"} and first["score"] == want[0].score
    assert first["document"]["contents"] == f'"{want[0].title}"\n{want[0].snippet}'
    plain = httpx.post(server.url + "/retrieve", json={"queries": ["Lilu"]}, timeout=10).json()["result"]
    assert len(plain[0]) == 3 and "contents" in plain[0][0]  # Search-R1's default topk 3, documents only
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "backend": bm25.name,
                                                         "passages": len(bm25.passages)}
    for bad, msg in [({"queries": "x"}, "queries"), ({"queries": ["x"], "topk": 0}, "topk"),
                     ({"queries": [""]}, "non-empty")]:
        r = httpx.post(server.url + "/retrieve", json=bad, timeout=10)
        assert r.status_code == 400 and msg in r.json()["error"]
    # TCP_NODELAY on every connection (stdlib StreamRequestHandler.setup): without it each response's body
    # waited for the client's delayed ACK of its headers (bench/search.py: remote p50 60 ms -> 16 ms)
    assert server.httpd.RequestHandlerClass.disable_nagle_algorithm is True


def test_client_reads_search_r1_wiki18_documents():
    hit = parse_document({"document": {"id": "42", "contents": '"Aaron"\nAaron is a prophet.'}, "score": 0.8})
    assert (hit.id, hit.title, hit.snippet, hit.score) == ("42", "Aaron", "Aaron is a prophet.", 0.8)
    assert parse_document({"id": "7", "contents": "no title line"}).snippet == "no title line"


def test_64_concurrent_queries_are_answered_correctly_in_batches(server, bm25):
    client = RemoteBackend(RemoteConfig(url=server.url, timeout_s=60, attempt_timeout_s=30))
    queries = [q["question"] for q in load_hotpotqa_questions()[:64]]
    barrier = threading.Barrier(64)

    def ask(q):
        barrier.wait()
        return client.search(q, 5)
    with ThreadPoolExecutor(64) as pool:
        got = list(pool.map(ask, queries))
    assert got == [bm25.search(q, 5) for q in queries]
    assert server.batcher.batches < 64  # concurrent requests shared backend calls
    assert client.search_many(queries[:3], 2) == [bm25.search(q, 2) for q in queries[:3]]


def _serve(port_file):
    return subprocess.Popen([sys.executable, "-m", "arpo_env.cli", "serve-retriever", "--backend", "bm25",
                             "--port", "0"], stdout=subprocess.PIPE, text=True)


@pytest.mark.timeout(120)
def test_server_killed_mid_run_gives_error_observations_then_replay_answers(tmp_path, bm25):
    proc = _serve(tmp_path)
    try:
        info = json.loads(proc.stdout.readline())
        cache = str(tmp_path / "c.sqlite")
        env = SearchEnv(backend="remote", remote_url=info["url"], remote=FAST, cache_mode="read-write", max_tool_calls=20,
                        cache_path=cache)
        env.reset(seed=0)
        queries = [q["question"] for q in load_hotpotqa_questions()[:6]]
        seen = {}
        for q in queries[:3]:
            obs, _, _, _, step = env.step(f"<search>{q}</search>")
            assert not step["tool_error"] and obs.startswith("<result>\nPage 1: ")
            seen[q] = obs
        assert seen[queries[0]].split("\n")[1].startswith(f"Page 1: {bm25.search(queries[0], 5)[0].title}: ")
    finally:
        proc.kill()
        proc.wait(10)
    for q in queries[3:]:  # down: an error observation within the client's budget, never a hang
        obs, reward, terminated, _, step = env.step(f"<search>{q}</search>")
        assert step["tool_error"] and "is not answering" in obs and info["url"] in obs, obs
        assert not terminated and reward == 0
    replay = SearchEnv(backend="remote", remote_url=info["url"], cache_mode="replay-only", cache_path=cache,
                       max_tool_calls=20)
    replay.reset(seed=0)
    for q in queries[:3]:
        assert replay.step(f"<search>{q}</search>")[0] == seen[q]
    obs, *_, step = replay.step(f"<search>{queries[4]}</search>")
    assert step["tool_error"] and "replay-only" in obs
    assert len(SearchCache(cache)) == 3


def test_remote_env_passes_check_env_and_check_fork(server):
    env = arpo_env.make("arpo/Search-v0", backend="remote", remote_url=server.url, remote=FAST)
    strict_check_env(env)
    report = check_fork(env)
    assert report.fork_kind == "state" and report.deterministic
    with pytest.raises(ValueError, match="remote_url"):
        SearchEnv(backend="remote")


def test_client_error_is_not_retried_and_unknown_path(server):
    client = RemoteBackend(RemoteConfig(url=server.url + "/retrieve", **FAST))
    with pytest.raises(SearchError, match="refused the query"):
        client.search_many(["x" * 5000], 3)
    assert httpx.get(server.url + "/nope").status_code == 404


def test_title_linker_finds_mentions_longest_first():
    linker = TitleLinker(["Lisbon", "Porto", "Portugal", "Slava (river)", "The", "Port wine", "Port"])
    assert linker.mentions("Port wine from Porto, near Lisbon (Portugal) and the Slava.") == [5, 1, 0, 2, 3]
    assert linker.mentions("the of and") == []


def test_title_linker_proper_only_skips_lower_case_mentions():
    """With ``proper_only`` (the hybrid's default) "a comedy film taken from" links neither "Comedy!" nor
    "Taken (film)"; the capitalised mentions still link, function words inside a title may stay lower case."""
    titles = ["Comedy!", "Taken (film)", "Kenneth Branagh", "Lord of the Rings", "1984"]
    text = "A comedy film taken from Lord of the Rings by Kenneth Branagh in 1984, not a Comedy."
    assert TitleLinker(titles, proper_only=True).mentions(text) == [3, 2, 4, 0]
    assert TitleLinker(titles).mentions(text) == [0, 1, 3, 2, 4]


def test_question_sets_and_recall(tmp_path, bm25):
    hot, wiki, tune = (load_question_set(s) for s in ("hotpotqa", "2wiki", "tune"))
    assert len(hot) == 100 and "titles" in hot[0] and "answers" in wiki[0] and "answers" in tune[0]
    assert not {q["question"] for q in tune} & ({q["question"] for q in hot} | {q["question"] for q in wiki})
    r = recall(bm25, hot[:20])
    assert r["metric"] == "passage recall" and 0 < r["recall@5"] <= r["recall@10"] <= 1
    user = tmp_path / "mine.jsonl"
    user.write_text(json.dumps({"question": "What is the capital of Portugal?", "answers": ["Lisbon"]}) + "\n")
    tiny = BM25Backend(passages=[Passage("a", "Lisbon", "Lisbon is the capital of Portugal."),
                                 Passage("b", "Oslo", "Oslo is the capital of Norway.")], use_disk_cache=False)
    assert recall(tiny, load_question_set(user), (1,))["recall@1"] == 1.0
    user.write_text('{"question": "no gold"}\n')
    with pytest.raises(ValueError, match="record 1 needs"):
        load_question_set(user)


def test_auto_backend_is_bm25_without_the_dense_extra(monkeypatch):
    from arpo_env import extras
    from arpo_env.envs.search.tool import SearchConfig
    monkeypatch.setitem(extras.EXTRAS, "dense", ("arpo_no_such_module",))
    assert SearchConfig().backend == "bm25"
    assert SearchConfig(remote_url="http://127.0.0.1:1").backend == "remote"
    with pytest.raises(ValueError, match="one of auto, bm25"):
        SearchConfig(backend="nope")
