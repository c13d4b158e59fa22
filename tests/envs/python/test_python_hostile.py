"""Hostile code against every sandbox tier (16 cases x 3 tiers).

Each case: the call returns a clear result that names what stopped it (the time limit, a resource limit,
the session's death), the host (this test process) and the env survive (the next call works), and nothing escapes (host files untouched, no connection reached a
host socket, no process of the tree left after close).
"""
from __future__ import annotations

import errno
import os
import secrets
import socket
import time
from pathlib import Path

import pytest

from arpo_env.envs.python.tiers.common import uid_processes
from tests.helpers.waiting import wait_until

TIMEOUT = 2.0
HANG_GUARD = 60
"""Seconds a test may take before pytest-timeout fails it as hung: 30x the cell deadline, so it never decides
a result (a restart of a killed session, a new docker container, takes about a second). That a deadline
fired is read from the result (``exception == "Timeout"``), never from a measured duration."""
pytestmark = pytest.mark.timeout(HANG_GUARD)


def run(tool, code: str):
    """One tool call, in the test's own thread: a tier ties a sandbox's life to the thread that started it
    (PDEATHSIG), so a session restarted inside a short-lived helper thread would die with that thread."""
    return tool(code)


def assert_recovers(tool) -> None:
    """The next call runs (in a restarted session if the last one died, which the output then says)."""
    res = tool("print(40 + 2)")
    assert not res.error, res.text
    assert res.text == "42" or (res.text.endswith("\n42") and "restarted" in res.text), res.text


@pytest.fixture
def tool(make_tool):
    return make_tool(timeout=TIMEOUT, memory_mb=512, max_file_mb=16, scratch_mb=48, max_processes=48)


def test_fork_bomb(tool):
    res = run(tool, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert res.error and res.metadata["exception"] in ("Timeout", "SessionDied")
    assert "restarted" in res.text
    assert_recovers(tool)


def test_memory_bomb(tool):
    res = run(tool, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))")
    assert res.error and res.metadata["exception"] in ("MemoryError", "SessionDied"), res.text
    res = run(tool, "x = bytearray(16 * 2**30)")
    assert res.error and res.metadata["exception"] in ("MemoryError", "SessionDied"), res.text
    assert_recovers(tool)


def test_infinite_loop(tool):
    res = run(tool, "while True:\n    pass")
    assert res.metadata["exception"] == "Timeout" and "time limit" in res.text
    assert_recovers(tool)


def test_busy_threads(tool):
    res = run(tool, "import threading\ndef spin():\n    while True:\n        pass\n"
                    "ts = [threading.Thread(target=spin) for _ in range(8)]\n"
                    "[t.start() for t in ts]\n[t.join() for t in ts]")
    assert res.metadata["exception"] == "Timeout"
    assert_recovers(tool)


def test_huge_output(tool):
    res = run(tool, "import sys\nfor _ in range(200):\n    sys.stdout.write('y' * 100_000)")
    assert "[output truncated:" in res.text and len(res.text) < tool.config.max_output_chars + 200
    res = run(tool, "while True:\n    print('z' * 10_000)")  # stops at the file-size limit or the timeout
    assert res.error and len(res.text) < tool.config.max_output_chars + 600
    assert_recovers(tool)


def test_write_outside_scratch(tool, tmp_path):
    token = secrets.token_hex(8)
    targets = ["/etc/arpo_" + token, "/usr/arpo_" + token, str(Path.cwd() / f"arpo_{token}"),
               str(Path.home() / f"arpo_{token}"), f"/var/tmp/arpo_{token}", f"/dev/shm/arpo_{token}",
               f"/tmp/arpo_{token}", str(tmp_path / "x")]
    code = ("import os\nok = []\nfor p in %r:\n    try:\n        open(p, 'w').write('x')\n        ok.append(p)\n"
            "    except OSError:\n        pass\nprint(ok)\nopen('inside.txt', 'w').write('fine')\n"
            "print(open('inside.txt').read())" % (targets,))
    res = run(tool, code)
    assert res.text.endswith("fine"), res.text
    for target in targets:  # writes to the private /tmp, /var/tmp, /dev/shm never reach the host's
        assert not os.path.exists(target), f"sandbox wrote {target} on the host"
    assert_recovers(tool)


def test_read_host_secrets(tool, monkeypatch):
    token = secrets.token_hex(16)
    secret = Path.home() / f".arpo_secret_{token[:8]}"
    secret.write_text(token)
    monkeypatch.setenv("ARPO_TEST_SECRET", token)
    try:
        code = ("import os, glob\nfound = []\n"
                "for p in [%r, os.path.expanduser('~/.bashrc'), '/etc/shadow', '/proc/%d/environ']:\n"
                "    try:\n        found.append(open(p, 'rb').read()[:4000])\n    except OSError as e:\n"
                "        found.append(type(e).__name__)\n"
                "for d in ['/root', '/home', %r]:\n    try:\n        found.append(os.listdir(d))\n"
                "    except OSError as e:\n        found.append(type(e).__name__)\n"
                "print(found, dict(os.environ))" % (str(secret), os.getpid(), str(Path.home())))
        res = run(tool, code)
        assert token not in res.text and token[:8] not in res.text, res.text
        assert "ARPO_TEST_SECRET" not in res.text
        assert "root:" not in res.text  # /etc/shadow
    finally:
        secret.unlink()
    assert_recovers(tool)


def test_socket_to_localhost(tool):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        res = run(tool, f"import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))\n"
                        "print('connected')")
        assert "connected" not in res.text and res.error
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert_recovers(tool)


NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM}


def test_socket_to_public_address_fails_at_once(tool):
    # TEST-NET-1 documentation address: nothing real is targeted; with no network it fails immediately.
    # A connect that waited for an answer would end in TimeoutError, or run past the cell's deadline (2 s,
    # shorter than the socket's 5 s); with no route the kernel refuses it at once with an errno.
    res = run(tool, "import socket\ns = socket.socket()\ns.settimeout(5)\n"
                    "try:\n    s.connect(('192.0.2.1', 80))\n    print('connected')\n"
                    "except OSError as e:\n    print(type(e).__name__, e.errno)")
    assert res.metadata["exception"] is None, res.text  # the cell finished: the connect did not block
    name, code = res.text.split()
    assert name != "TimeoutError" and int(code) in NO_ROUTE, res.text
    assert_recovers(tool)


def test_signal_parent_and_host(tool):
    host_pid = os.getpid()
    res = run(tool, f"import os, signal\nfor pid in (os.getppid(), {host_pid}, 1):\n    try:\n"
                    "        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print(type(e).__name__)")
    assert os.getpid() == host_pid  # still here
    res = run(tool, "import os, signal\nos.kill(-1, signal.SIGKILL)")
    assert res.error or res.text
    time.sleep(0.5)  # kill(-1) may take down sandbox processes whose death reaches the session later
    assert_recovers(tool)


def test_exec_shell(tool):
    res = run(tool, "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo pwned; exit 0'])")
    assert res.error and res.metadata["exception"] == "SessionDied" and "restarted" in res.text
    assert_recovers(tool)


def test_ctypes_segfault(tool):
    res = run(tool, "import ctypes\nctypes.string_at(0)")
    assert res.metadata["exception"] == "SessionDied" and "died" in res.text
    assert_recovers(tool)


def test_fill_the_disk(tool):
    res = run(tool, "import os\nn = 0\ntry:\n    for i in range(100):\n        with open(f'big{i}', 'wb') as f:\n"
                    "            for _ in range(64):\n                f.write(b'0' * 2**20)\n                n += 1\n"
                    "except OSError as e:\n    print(type(e).__name__, e.errno, n)")
    assert res.text.startswith("OSError 27") or res.text.startswith("OSError 28") or \
        res.metadata["exception"] == "Timeout", res.text
    run(tool, "import glob, os\n[os.remove(p) for p in glob.glob('big*')]")
    assert_recovers(tool)


def test_close_stdout(tool):
    res = run(tool, "import os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\nprint('lost')")
    assert "lost" not in res.text.splitlines() and "closed file" in res.text, res.text
    assert_recovers(tool)


def test_sleep_past_timeout(tool):
    res = run(tool, "import time\ntime.sleep(3600)")  # an hour: only the 2 s deadline can end this call
    assert res.metadata["exception"] == "Timeout" and res.metadata["restarted"]
    assert f"time limit of {TIMEOUT:g} s" in res.text
    assert_recovers(tool)


def test_escaped_process_dies_with_the_tree(make_tool, tier):
    """A daemon that leaves the session's process group still dies when the tree closes."""
    tool = make_tool(timeout=TIMEOUT)
    res = tool("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.2)\nprint(os.getuid())")
    assert not res.error, res.text
    uid = tool.session.tree.zygote.uid
    tool.close()
    if uid is not None:
        wait_until(lambda: not uid_processes(uid))
        assert uid_processes(uid) == []
    assert _marker_processes(tool) == []


def _marker_processes(tool) -> list[int]:
    zy = tool._tree.zygote if tool._tree else None
    pids = []
    if zy is None or zy.pid is None:
        return pids
    for entry in os.listdir("/proc"):
        if entry == str(zy.pid):
            try:
                state = Path(f"/proc/{entry}/stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if state != "Z":
                pids.append(int(entry))
    return pids
