"""Total deadlines for httpx (:mod:`arpo_env.http_deadline`): a server dribbling its headers one byte a
second is cut off at the deadline, counted by what the server got out before the client hung up."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

httpx = pytest.importorskip("httpx")

from arpo_env.deadline import time_left, total_deadline  # noqa: E402
from arpo_env.http_deadline import DeadlineTransport  # noqa: E402
from tests.helpers.dribble import HEAD, Dribbler  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402


@pytest.fixture
def dribbler():
    d = Dribbler()
    yield d
    d.close()


def test_a_dribbling_server_is_cut_off_at_the_total_deadline(dribbler):
    with httpx.Client(transport=DeadlineTransport(trust_env=False), timeout=30) as client:
        with total_deadline(1.0), pytest.raises(httpx.TimeoutException):
            client.get(dribbler.url)
        # httpx's own timeout (30 s a read) alone would have waited for all of it
    assert wait_until(lambda: dribbler.sent)
    assert dribbler.hung_up == [True]
    assert dribbler.sent[0] <= 1 + 3 < len(HEAD), dribbler.sent  # ~1 byte a second for 1 s, plus slack


def test_outside_a_deadline_the_transport_is_plain_httpx():
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with httpx.Client(transport=DeadlineTransport(trust_env=False)) as client:
            url = f"http://localhost:{srv.server_address[1]}/"  # a name: resolved by the transport
            assert client.get(url).text == "hello"
            with total_deadline(30.0):
                assert client.get(url).text == "hello"
    finally:
        srv.shutdown()
        srv.server_close()


def test_total_deadline_nests_and_resets():
    assert time_left() is None
    with total_deadline(100.0):
        with total_deadline(1000.0):
            left = time_left()
            assert left is not None and left <= 100.0  # the enclosing, earlier deadline wins
    assert time_left() is None
