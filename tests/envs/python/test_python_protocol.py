"""The host side of the session protocol, without a sandbox: a reply is accepted only when it answers the
request (same id) and every byte of it came from the session's own process; anything else is an error
(``ProtocolError`` / ``ChannelCorrupt``), never a result. The "worker" here is this test process or a
helper subprocess writing on the worker's end of a socketpair."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys

import pytest

from arpo_env.envs.python import channel
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.session import Session

WRITE = "import os, sys\nos.write(int(sys.argv[1]), bytes.fromhex(sys.argv[2]))"


def frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def write_from_other_process(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` on ``sock`` from a different process (another pid in the credentials)."""
    subprocess.run([sys.executable, "-c", WRITE, str(sock.fileno()), data.hex()], pass_fds=(sock.fileno(),),
                   check=True)


class FakeTree:
    config = SandboxConfig(sandbox="subprocess", start_timeout=5, timeout=5)

    def __init__(self) -> None:
        self.refs = 0

    def _acquire(self) -> None:
        self.refs += 1

    def _release(self) -> None:
        self.refs -= 1

    def kill_group(self, host_pid: int | None, ns_pid: int | None) -> None:
        pass


@pytest.fixture
def session_and_worker():
    host, worker = channel.pair()
    channel.send(worker, {"op": "hello", "pid": 1, "scratch": "/tmp/x"})  # greets from this process's pid
    tree = FakeTree()
    session = Session(tree, host, None)  # type: ignore[arg-type]
    yield session, worker, tree
    session.close()
    worker.close()


def test_check_reply():
    assert channel.check_reply({"op": "result", "id": 3}, 100, 3, 100) is None
    assert "answers request 2, not request 3" in (channel.check_reply({"id": 2}, 100, 3, 100) or "")
    assert "not from the session's process 100" in (channel.check_reply({"id": 3}, 101, 3, 100) or "")
    assert "process None" in (channel.check_reply({"id": 3}, None, 3, 100) or "")
    assert channel.check_reply({"id": 3}, None, 3, None) is None  # pid unknown: the id alone decides


def test_reply_with_wrong_id_is_an_error_and_closes_the_session(session_and_worker):
    session, worker, tree = session_and_worker
    assert session.host_pid == os.getpid()
    worker.sendall(frame({"op": "result", "output": "stale", "error": None, "id": 99}))
    res = session.execute("print(1)")
    assert res.error == "ProtocolError" and res.output == "" and "request 99" in res.metadata["reason"]
    assert session.closed and tree.refs == 0


def test_reply_from_another_process_is_an_error(session_and_worker):
    session, worker, _ = session_and_worker
    write_from_other_process(worker, frame({"op": "result", "output": "forged", "error": None, "id": 1}))
    res = session.execute("print(1)")  # the forged frame has the right id: only the pid gives it away
    assert res.error == "ProtocolError" and res.output == ""
    assert f"not from the session's process {os.getpid()}" in res.metadata["reason"]


def test_right_reply_is_accepted(session_and_worker):
    session, worker, _ = session_and_worker
    worker.sendall(frame({"op": "result", "output": "1\n", "error": None, "dropped_bytes": 0, "id": 1}))
    res = session.execute("print(1)")
    assert res.error is None and res.output == "1\n" and not session.closed


def test_fork_reply_with_wrong_id_raises_protocol_error(session_and_worker):
    from arpo_env.envs.python.protocol import ProtocolError
    session, worker, _ = session_and_worker
    worker.sendall(frame({"op": "forked", "pid": 5, "id": 7}))
    with pytest.raises(ProtocolError, match="request 7"):
        session.fork()
    assert session.closed


def test_message_of_two_processes_is_corrupt():
    host, worker = channel.pair()
    try:
        data = frame({"op": "result", "output": "x" * 100, "id": 1})
        worker.sendall(data[:20])
        write_from_other_process(worker, data[20:])
        with pytest.raises(channel.ChannelCorrupt, match="several processes"):
            channel.recv(host, timeout=5)
    finally:
        host.close()
        worker.close()


@pytest.mark.parametrize("data, why", [(b"\xff\xff\xff\xff", "announced"), (struct.pack(">I", 3) + b"{x]", "not JSON"),
                                       (frame([1, 2]), "not an object")])
def test_garbled_stream_is_corrupt(data, why):
    host, worker = channel.pair()
    try:
        worker.sendall(data)
        with pytest.raises(channel.ChannelCorrupt, match=why):
            channel.recv(host, timeout=5)
    finally:
        host.close()
        worker.close()
