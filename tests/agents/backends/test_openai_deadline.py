"""The ``openai`` backend's timeout is a total deadline: a server dribbling its headers is cut off."""
from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")

from arpo_env.agent import SamplingParams  # noqa: E402
from arpo_env.agents.backends.openai import OpenAIBackend  # noqa: E402
from tests.helpers.dribble import HEAD, Dribbler  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402


def test_a_dribbling_server_fails_the_request_at_its_timeout():
    dribbler = Dribbler()
    try:
        backend = OpenAIBackend(model="m", base_url=dribbler.url + "/v1", timeout=1.0)
        with pytest.raises(httpx.TimeoutException):
            backend.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4))
        backend.close()
        assert wait_until(lambda: dribbler.sent)
        assert dribbler.hung_up == [True] and dribbler.sent[0] <= 1 + 3 < len(HEAD), dribbler.sent
    finally:
        dribbler.close()
