"""``arpo/Python-v0`` on every tier: Gymnasium's checker, check_fork, fork cost vs session memory,
and process hygiene (nothing left after close or after the host is killed)."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

import arpo_env
from arpo_env.fork import ForkKind, check_fork
from arpo_env.envs.python.config import SandboxConfig
from arpo_env.envs.python.session import Tree
from arpo_env.envs.python.tiers import get_tier
from arpo_env.envs.python.tiers.common import uid_processes

ROOT = Path(__file__).resolve().parents[3]


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


def _fork_ms(session) -> tuple[float, float]:
    t0 = time.perf_counter()
    child = session.fork()
    wall = time.perf_counter() - t0
    child.close()
    return wall * 1e3, child.fork_seconds * 1e3


def test_fork_cost_does_not_grow_with_session_memory(tier):
    """Forks of an empty and of a 200 MB session, interleaved (so machine load hits both alike)."""
    tree = Tree(get_tier(tier), SandboxConfig(sandbox=tier, memory_mb=1024))
    empty, big = tree.spawn(), tree.spawn()
    try:
        res = big.execute("blob = bytearray(200 * 2**20)\nblob[::4096] = b'x' * len(blob[::4096])")
        assert res.error is None, res.output
        samples = {"empty": [], "big": []}
        for _ in range(15):
            for name, session in (("empty", empty), ("big", big)):
                samples[name].append(_fork_ms(session))
        child = big.fork()
        assert child.execute("len(blob) >> 20").output.strip() == "200"
        child.close()
    finally:
        empty.close()
        big.close()
    med = {k: (statistics.median(w for w, _ in v), statistics.median(f for _, f in v)) for k, v in samples.items()}
    assert med["big"][0] <= 2 * med["empty"][0], med  # round trip: request, fork, child ready
    assert med["big"][1] <= 2 * med["empty"][1] + 0.2, med  # the os.fork() call itself


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
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                out.append(int(entry))
    return out


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
    deadline = time.monotonic() + 10
    while _live(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live(pids) == []
    if zy.uid is not None:
        assert uid_processes(zy.uid) == []
    assert _zombie_children(os.getpid()) == []


HOST = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, sys.argv[2])
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
    host = subprocess.Popen([sys.executable, "-c", HOST, tier, str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(host.stdout.readline())
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (_live(info["pids"]) or (info["uid"] and uid_processes(info["uid"]))):
        time.sleep(0.2)
    assert _live(info["pids"]) == []
    if info["uid"] is not None:
        assert uid_processes(info["uid"]) == []
