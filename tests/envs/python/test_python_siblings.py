"""What one branch of an episode can do to a sibling branch, on every tier: exactly the documented limit
("sessions of one tree share the tree's uid, process budget and tmpfs", :mod:`arpo_env.envs.python.session`).

Branches (``env.fork()``) are ``os.fork`` s of one session inside one sandbox: a branch can read a
sibling's scratch files, kill it (the sibling's next call says it died and restarts it empty), and use up
the tree's process budget so that the sibling can neither ``os.fork()`` nor be forked (a ``SandboxError``
naming the cause; the sibling itself stays usable). Different trees (episodes) are isolated; that is
tested in test_python_hostile.py / test_python_pool.py.
"""
from __future__ import annotations

import pytest

from arpo_env.envs.python.protocol import SandboxError
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

HOLD_PROCESSES = """
import os, signal, time
kids = []
try:
    while len(kids) < 60:
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        kids.append(pid)
except OSError as e:
    print(type(e).__name__)
"""
TRY_FORK = ("import os\ntry:\n    pid = os.fork()\nexcept OSError as e:\n    print(type(e).__name__)\nelse:\n"
            "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n    print('forked')")
RELEASE = "for k in kids:\n    os.kill(k, signal.SIGKILL)\n    os.waitpid(k, 0)\nkids = []"


def test_a_branch_can_starve_read_and_kill_its_sibling(make_tool, tier):
    a = make_tool(timeout=20, max_processes=24)
    a("import os\nopen('mine.txt', 'w').write('secret')\nv = 1")
    b = a.fork()
    try:
        shared_budget = tier == "docker" or a.session.tree.zygote.own_uid  # a process limit exists at all
        # the tmpfs and the uid are shared: a sibling's scratch files are readable
        assert b(f"open({a.session.scratch!r} + '/mine.txt').read()").text == "'secret'"

        held = a(HOLD_PROCESSES)
        if shared_budget:  # a holds the whole budget of the tree: its sibling can no longer fork
            assert held.text == "BlockingIOError", held.text
            assert b(TRY_FORK).text == "BlockingIOError"
            with pytest.raises(SandboxError, match="refused the fork: fork failed: os.fork"):
                b.fork()
            assert b("v + 1").text == "2"  # refused, not broken
        else:  # no root, no docker: no process budget (only the 60 cap of the cell)
            assert held.text == "(no output)", held.text
            assert b(TRY_FORK).text == "forked"
        a(RELEASE)
        assert b(TRY_FORK).text == "forked"

        # same uid: a branch may signal its sibling; the sibling's next call says so and starts empty
        b_pid = int(b("os.getpid()").text)
        assert a(f"os.kill({b_pid}, 9)\nprint('sent')").text == "sent"
        wait_until(b._session.died_between_calls)
        res = b("print(6 * 7)")
        assert res.metadata["died_before_call"] and res.text.endswith("\n42"), res.text
        assert "NameError" in b("v").text
        assert a("v").text == "1"  # the killer itself is untouched
    finally:
        b.close()
