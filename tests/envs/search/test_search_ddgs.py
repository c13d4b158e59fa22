"""The live ``ddgs`` backend without a network: clear error observations at the deadline, retries and rate
limiting (on a stand-in clock), and exact replay of recorded results in ``replay-only`` mode."""
from __future__ import annotations

import time

import pytest

from arpo_env.envs.search import ddgs_backend
from arpo_env.envs.search.base import Hit, SearchError
from arpo_env.envs.search.cache import SearchCache
from arpo_env.envs.search.ddgs_backend import DDGSBackend, DDGSConfig
from arpo_env.envs.search.env import SearchEnv

FAST = {"timeout_s": 4.0, "attempt_timeout_s": 2.0, "retries": 1, "backoff_s": 0.2, "min_interval_s": 0.0}


class FakeClock:
    """Stands in for the backend module's ``time``: ``sleep`` is recorded and advances ``monotonic``, so
    backoff and rate limiting are checked as the pauses asked for, not as measured durations."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(ddgs_backend, "time", fake)
    monkeypatch.setattr(ddgs_backend, "_LIMITER", ddgs_backend._RateLimiter())  # no spacing carried over
    return fake


@pytest.mark.timeout(60)  # hang guard only (15x the 4 s budget); the result shows the failure path
@pytest.mark.parametrize("route", ["direct", "dead-proxy"])
def test_no_network_gives_error_observation_within_timeout(tmp_path, route):
    # "direct": on a machine without internet the real ddgs call fails (DNS). "dead-proxy": the real ddgs
    # client is routed through a closed loopback port, so the network is unavailable even where CI has one.
    opts = dict(FAST, proxy="http://127.0.0.1:9") if route == "dead-proxy" else FAST
    env = SearchEnv(backend="ddgs", cache_path=str(tmp_path / "live.sqlite"), ddgs=opts)
    assert env.fork_kind.value == "external" and not env.deterministic
    env.reset(options={"question": "Who wrote Hamlet?", "answer": "Shakespeare"})
    obs, reward, terminated, truncated, info = env.step("<search>who wrote hamlet</search>")
    if route == "direct" and not info["tool_error"]:
        pytest.skip("this machine reaches the internet; the dead-proxy case covers the no-network path")
    assert info["tool_error"] and obs.startswith("<result>\nError: web search failed")
    assert not terminated and not truncated and reward == 0
    assert len(SearchCache(tmp_path / "live.sqlite")) == 0  # failures are never recorded
    child = env.fork()  # external kind: tools forked, cache shared
    assert child.backend is env.backend and child.search_tool is not env.search_tool
    child.step("<search>another query</search>")
    assert env.search_tool.history == ["who wrote hamlet"] and len(child.search_tool.history) == 2
    env.close()


def test_hanging_client_is_abandoned_at_the_deadline():
    calls = []

    def hang(query, k):
        calls.append(query)
        time.sleep(30)  # 20x the budget; waited for, it would return None and the search an empty list

    backend = DDGSBackend(DDGSConfig(timeout_s=1.5, attempt_timeout_s=0.5, retries=5, backoff_s=0.1,
                                     min_interval_s=0.0), client=hang)
    with pytest.raises(SearchError, match="TimeoutError"):  # the attempt's deadline abandoned the call
        backend.search("anything", 3)
    assert 1 <= len(calls) <= 6


def test_retries_with_backoff_then_success(clock):
    attempts = []

    def flaky(query, k):
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise RuntimeError("202 Ratelimit")
        return [{"title": "T", "href": "https://example.org", "body": "B"}] * 10

    backend = DDGSBackend(DDGSConfig(timeout_s=5, retries=3, backoff_s=0.1, min_interval_s=0.0), client=flaky)
    hits = backend.search("q", 4)
    assert len(hits) == 4 and hits[0] == Hit("T", "B", url="https://example.org")
    assert clock.sleeps == pytest.approx([0.1, 0.2])  # exponential backoff: doubled after each failure
    assert attempts == pytest.approx([1000.0, 1000.1, 1000.3])  # each retry after its pause


def test_rate_limiter_spaces_requests(clock):
    stamps = []
    backend = DDGSBackend(DDGSConfig(min_interval_s=0.2), client=lambda q, k: stamps.append(clock.now) or [])
    for _ in range(3):
        assert backend.search("q", 1) == []
    assert clock.sleeps == pytest.approx([0.2, 0.2])  # the 2nd and 3rd request wait for their slot
    assert stamps == pytest.approx([1000.0, 1000.2, 1000.4])


def test_replay_only_with_filled_cache_returns_recorded_results(tmp_path, monkeypatch):
    path = tmp_path / "rec.sqlite"
    # Record a run with a stand-in client, as a live run would, then replay it with the real backend
    # configured but the cache in replay-only mode: no request is made, the same text comes back.
    recorder = SearchEnv(backend="ddgs", cache_path=str(path), cache_mode="read-write",
                         backend_impl=DDGSBackend(DDGSConfig(min_interval_s=0.0), client=lambda q, k: [
                             {"title": "Hamlet", "href": "https://en.wikipedia.org/wiki/Hamlet",
                              "body": "Hamlet is a tragedy written by William Shakespeare."}]))
    recorder.reset(options={"question": "Who wrote Hamlet?", "answer": "Shakespeare"})
    recorded, *_ = recorder.step("<search>who wrote Hamlet</search>")
    assert "Page 1: Hamlet: Hamlet is a tragedy" in recorded

    requests = []  # the real ddgs client is swapped for one that records any request made
    monkeypatch.setattr(ddgs_backend, "_default_client", lambda cfg: lambda q, k: requests.append(q) or [])
    replay = SearchEnv(backend="ddgs", cache_path=str(path), cache_mode="replay-only", ddgs=FAST)
    assert replay.deterministic and replay.fork_kind.value == "state"
    replay.reset(options={"question": "Who wrote Hamlet?", "answer": "Shakespeare"})
    obs, _, _, _, info = replay.step("<search>Who wrote  hamlet</search>")
    assert obs == recorded and not info["tool_error"]
    obs, _, _, _, info = replay.step("<search>a query never recorded</search>")
    assert info["tool_error"] and "replay-only" in obs
    assert requests == []  # a hit and a miss, and no request either time
