"""``arpo/Python-v0`` on every tier: Gymnasium's checker, check_fork, forks that are copy-on-write
whatever the session's memory, and process hygiene (nothing left after close or after the host is killed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

import arpo_env
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.session import Tree
from arpo_env.envs.python.tiers import get_tier
from arpo_env.envs.python.tiers.common import uid_processes
from arpo_env.fork import ForkKind, check_fork
from tests.helpers.procs import children
from tests.helpers.waiting import wait_until


def test_check_env(tier):
    env = gym.make("arpo/Python-v0", sandbox=tier)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_check_fork_and_episode(tier):
    env = arpo_env.make("arpo/Python-v0", sandbox=tier)
    try:
        assert env.fork_kind is ForkKind.PROCESS and env.tool.tier == tier
        report = check_fork(env)
        assert report.outputs[0][0] == "<result>\n20 ab\n</result>"
        prompt, info = env.reset(seed=3)
        assert "python" in info["system_prompt"] and info["tools"] == ["python"]
        gold = info["task"]["answer"][0]
        obs, _, _, _, step_info = env.step("<python>v = 5\nv * 2</python>")
        assert obs == "<result>\n10\n</result>" and step_info["tool_metadata"]["tier"] == tier
        child = env.fork()
        try:
            child.step("<python>v = 0</python>")
            assert env.step("<python>v</python>")[0] == "<result>\n5\n</result>"
        finally:
            child.close()
        _, reward, terminated, _, _ = env.step(f"<think>ok</think><answer>\\boxed{{{gold}}}</answer>")
        assert terminated and reward == 1.0
        env.reset(seed=4)  # a new episode starts with an empty session
        assert "NameError" in env.step("<python>v</python>")[0]
    finally:
        env.close()


MEMORY_CELL = """
import json, os
path = "/proc/self/smaps_rollup" if os.path.exists("/proc/self/smaps_rollup") else "/proc/self/smaps"
kb = {"Shared_Clean": 0, "Shared_Dirty": 0, "Private_Clean": 0, "Private_Dirty": 0}
for line in open(path):
    key, _, rest = line.partition(":")
    if key in kb:
        kb[key] += int(rest.split()[0])
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(),
                  "shared_mb": (kb["Shared_Clean"] + kb["Shared_Dirty"]) / 1024,
                  "private_mb": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024}))
"""


def _memory(session) -> dict:
    """The session's own view of itself: pid, parent pid, and its resident memory (MB) split into pages
    shared with another process and pages only it maps (``/proc/self/smaps_rollup``, read from inside
    the sandbox, so it works on every tier whatever uid the session runs as)."""
    res = session.execute(MEMORY_CELL)
    assert res.error is None, res.output
    return json.loads(res.output)


def test_fork_is_copy_on_write_of_the_session_process(tier):
    """Why a fork costs the same for an empty and a 200 MB session, checked structurally: the child is an
    ``os.fork()`` of the session process itself (its parent pid is the session's pid) and it maps the
    session's 200 MB as pages shared with the parent, not as a private copy. A fork that re-created the
    session (a new interpreter, state serialised across) would hold the 200 MB privately. Latency
    numbers live in ``bench/python_tool.py``."""
    tree = Tree(get_tier(tier), SandboxConfig(sandbox=tier, memory_mb=1024))
    big = tree.spawn()
    try:
        res = big.execute("blob = bytearray(200 * 2**20)\nblob[::4096] = b'x' * len(blob[::4096])")
        assert res.error is None, res.output  # every page written: 200 MB resident in the session
        parent = _memory(big)
        assert parent["private_mb"] >= 200, parent  # nothing shares the blob before the fork
        child_session = big.fork()
        try:
            child = _memory(child_session)
            after = _memory(big)
            assert child["pid"] != parent["pid"] and child["ppid"] == parent["pid"], (parent, child)
            assert child_session.host_pid != big.host_pid
            assert child["shared_mb"] >= 190, child  # the blob's pages, shared copy-on-write
            assert child["private_mb"] < 50, child  # no private copy of the blob
            assert after["shared_mb"] >= 190, after  # the parent's pages are the same shared ones
            assert child_session.execute("len(blob) >> 20").output.strip() == "200"
        finally:
            child_session.close()
    finally:
        big.close()


def _live(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def _zombie_children(pid: int) -> list[int]:
    return [child for child, state in children(pid) if state == "Z"]


def test_no_zombies_or_orphans_after_close(tier):
    env = arpo_env.make("arpo/Python-v0", sandbox=tier)
    env.reset(seed=0)
    env.step("<python>import subprocess\np = subprocess.Popen(['sleep', '300'])\nx = 1</python>")
    children = [env.fork() for _ in range(3)]
    grandchild = children[0].fork()
    zy = env.tool.session.tree.zygote
    pids = [t.tool.session.host_pid for t in [env, *children, grandchild]] + [zy.pid]
    children[1].close()  # a fork ends before its parent: reaped, not a zombie
    time.sleep(0.3)
    assert _live([children[1].tool._session.host_pid] if children[1].tool._session else []) == []
    for e in [grandchild, children[0], children[2]]:
        e.close()
    env.close()
    wait_until(lambda: not _live(pids))
    assert _live(pids) == []
    if zy.uid is not None:
        assert uid_processes(zy.uid) == []
    assert _zombie_children(os.getpid()) == []


HOST = textwrap.dedent("""
    import json, sys, time
    import arpo_env
    env = arpo_env.make("arpo/Python-v0", sandbox=sys.argv[1])
    env.reset(seed=0)
    env.step("<python>import subprocess\\np = subprocess.Popen(['sleep', '300'])</python>")
    kids = [env.fork(), env.fork()]
    kids[0].step("<python>import time</python>")
    zy = env.tool.session.tree.zygote
    pids = [e.tool.session.host_pid for e in [env, *kids]] + [zy.pid]
    print(json.dumps({"pids": pids, "uid": zy.uid}), flush=True)
    time.sleep(600)
""")


def test_no_orphans_after_host_is_killed(tier):
    host = subprocess.Popen([sys.executable, "-c", HOST, tier], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(host.stdout.readline())
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    wait_until(lambda: not (_live(info["pids"]) or (info["uid"] and uid_processes(info["uid"]))))
    assert _live(info["pids"]) == []
    if info["uid"] is not None:
        assert uid_processes(info["uid"]) == []
