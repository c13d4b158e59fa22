"""The ``openai`` backend over a pool of two servers (``base_url=URL1,URL2``): requests are spread over
both (least in flight, ties round robin), results stay in order, and ``arpo eval``'s server check checks
every member."""
from __future__ import annotations

import pytest

pytest.importorskip("httpx")

from arpo_env.agent import SamplingParams  # noqa: E402
from arpo_env.agents.backends.openai import OpenAIBackend, split_base_urls  # noqa: E402
from arpo_env.benchmarks.cli import check_server  # noqa: E402
from arpo_env.errors import UserError  # noqa: E402
from tests.helpers.fake_openai import FakeCompletionsServer  # noqa: E402


def test_requests_are_spread_over_the_pool_and_come_back_in_order():
    a, b = FakeCompletionsServer(), FakeCompletionsServer()
    try:
        backend = OpenAIBackend(base_url=f"{a.url},{b.url}/", max_concurrency=4)
        assert backend.model == "fake" and backend.base_urls == [a.url, b.url]
        gens = backend.generate([[i] for i in range(10)], SamplingParams(max_new_tokens=2))
        assert [g.token_ids for g in gens] == [[i + 1, i + 1] for i in range(10)]
        assert a.served + b.served == 10 and a.served >= 3 and b.served >= 3
        assert backend.requests_per_server == [a.served, b.served]
        backend.close()
        check_server(f"{a.url},{b.url}")
    finally:
        a.close()
        b.close()
    with pytest.raises(UserError, match="cannot reach"):
        check_server(f"{a.url},{b.url}")


def test_an_empty_pool_is_refused():
    with pytest.raises(ValueError, match="names no server"):
        split_base_urls(" , ")
