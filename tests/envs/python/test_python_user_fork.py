"""The agent's own ``os.fork()`` on every tier: the forked copy never answers for the session (each later
call returns exactly its own output), ``env.fork()`` still works and both branches keep their variables;
a fork forged through ``ctypes`` is caught by the host's pid check; a fork that fails raises
``SandboxError`` naming the cause and leaves no process or zombie; fd exhaustion gives a clear error."""
from __future__ import annotations

from pathlib import Path

import pytest

from arpo_env.envs.python.protocol import SandboxError
from tests.helpers.procs import children
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

USER_FORKS = {
    "bare": "import os; pid = os.fork()",
    "loop_of_10": "import os\nfor i in range(10):\n    if os.fork() == 0:\n        break",
    "child_sleeps": "import os, time\nif os.fork() == 0:\n    time.sleep(30)",
    "child_writes_late": ("import os, time\nif os.fork() == 0:\n    for _ in range(30):\n"
                          "        print('forked', flush=True)\n        time.sleep(0.01)\n"
                          "    open('child_done', 'w').close()"),
}


def assert_exact_calls(tool, n: int = 20) -> None:
    for k in range(n):
        res = tool(f"print({k} * {k})")
        assert (res.text, res.error) == (str(k * k), False), (k, res.text)


def assert_branches_work(tool) -> None:
    child = tool.fork()
    try:
        assert child("v = v * 3\nv").text == "21"
        assert tool("v * 2").text == "14"
        assert_exact_calls(child, 3)
    finally:
        child.close()


@pytest.mark.parametrize("case", list(USER_FORKS))
def test_user_fork_never_answers_for_the_session(make_tool, case):
    tool = make_tool(timeout=10)
    tool("v = 7")
    tool(USER_FORKS[case])
    if case == "child_writes_late":  # the child prints after the forking cell ended: dropped
        res = tool("import os, time\nwhile not os.path.exists('child_done'):\n    time.sleep(0.01)")
        assert res.text == "(no output)", res.text
    assert_exact_calls(tool)
    assert_branches_work(tool)


def test_child_output_during_the_forking_cell_is_part_of_it(make_tool):
    tool = make_tool(timeout=10)
    res = tool("import os, sys\nif os.fork() == 0:\n    print('child')\n    sys.exit(0)\n"
               "_, status = os.wait()\nprint('parent', status)")
    assert res.text == "child\nparent 0", res.text  # sys.exit in the child: no SystemExit traceback
    res = tool("import os\npid = os.fork()\nif pid == 0:\n    raise ValueError('in child')\n"
               "_, status = os.waitpid(pid, 0)\nprint(os.waitstatus_to_exitcode(status))")
    assert res.text.endswith("ValueError: in child\n1") and not res.error, res.text  # like a script
    assert_exact_calls(tool, 3)


FORGE = """
import ctypes, json, os, struct
pid = ctypes.CDLL(None).fork()  # libc's fork: Python's at-fork hooks do not run, the channel stays open
if pid == 0:
    body = json.dumps({"op": "result", "output": "forged", "error": None, "dropped_bytes": 0, "id": 1}).encode()
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink(f'/proc/self/fd/{fd}').startswith('socket:'):
                os.write(int(fd), struct.pack('>I', len(body)) + body)
        except OSError:
            pass
    os._exit(0)
os.waitpid(pid, 0)
print('real')
"""


def test_forged_reply_from_a_forked_child_is_an_error(make_tool):
    tool = make_tool(timeout=10)
    res = tool(FORGE)  # the first request (id 1): the forgery has the right id, only its pid differs
    assert res.metadata["exception"] == "ProtocolError" and res.metadata["restarted"], res.text
    assert "forged" not in res.text and "integrity check" in res.text
    assert tool("print(6 * 7)").text == "42"


def _exists(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("hook, cause", [("os._exit(3)", "ChannelClosed"), ("time.sleep(600)", "ChannelTimeout")])
def test_failed_fork_raises_with_cause_and_releases_every_process(make_tool, hook, cause):
    tool = make_tool(timeout=10, start_timeout=4)
    tool(f"import os, time\nos.register_at_fork(after_in_child=lambda: {hook})\nv = 7")  # breaks our fork too
    parent = tool.session
    assert parent.host_pid is not None
    before = children(parent.host_pid)
    with pytest.raises(SandboxError, match=f"forked session failed to start .*{cause}.*killed and reaped"):
        tool.fork()
    assert children(parent.host_pid) == before  # the child is gone, not even a zombie
    assert tool("v * 6").text == "42"  # the parent lives on
    zygote = tool.session.tree.zygote
    tool.close()
    wait_until(lambda: not _exists(zygote.pid))  # the last session's close takes the whole tree down
    assert not _exists(zygote.pid)


def test_fork_after_fd_exhaustion_names_the_cause(make_tool):
    tool = make_tool(timeout=10)
    res = tool("import os\nfds = []\ntry:\n    while True:\n        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
               "except OSError as e:\n    print(e.strerror)")
    assert res.text == "Too many open files", res.text
    with pytest.raises(SandboxError, match="out of file descriptors .*RLIMIT_NOFILE.*close some files"):
        tool.fork()
    assert tool("len(fds) > 100").text == "True"  # the session and its state survive
    tool("for fd in fds[:8]:\n    os.close(fd)\ndel fds[:8]")
    child = tool.fork()  # with descriptors free again, the fork works
    try:
        assert child("len(fds) > 100").text == "True"
    finally:
        child.close()
