"""Env workers (arpo_env.env_workers): a Python-v0 session forked inside a worker process keeps parent and
child apart; a foreign handle is refused; a worker killed mid-step gives WorkerDied-marked results, leaves no
process behind, and the ARPO rollout re-samples the trees it owned."""
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from arpo_env.agents import Agent
from arpo_env.env_workers import EnvWorkerPool, ForeignHandleError
from arpo_env.trainers.arpo_rollout import ARPORollout, BranchingConfig
from tests.helpers import tier_support
from tests.helpers.arpo_test_doubles import CharTokenizer, ScriptedBackend, calculator_script
from tests.helpers.procs import children
from tests.helpers.waiting import wait_until

PY = ("arpo/Python-v0", {"sandbox": "subprocess"})
TASK = {"question": "q", "answer": "1"}


def _gone(pid):
    return not os.path.exists(f"/proc/{pid}")


def _descendants(pid):
    out = []
    for child, _ in children(pid):
        out += [child, *_descendants(child)]
    return out


def check_fork_keeps_state_apart(pool):
    parent = pool.make()
    parent.reset(options=TASK)
    parent.step("<python>x = 1</python>")
    child = parent.fork()
    assert child.handle.worker == parent.handle.worker and child.handle != parent.handle
    assert "2" in child.step("<python>x = 2\nprint(x)</python>")[0]
    assert "1" in parent.step("<python>print(x)</python>")[0]
    assert parent.episode.tool_calls == 2 and parent.last_turn.is_tool_call
    child.close()
    parent.close()


def test_python_fork_inside_a_worker_process_keeps_parent_and_child_apart():
    tier_support.require("subprocess")
    with EnvWorkerPool(*PY, workers=1) as pool, EnvWorkerPool(*PY, workers=1) as other:
        check_fork_keeps_state_apart(pool)
        mine, theirs = pool.make(), other.make()
        mine.reset(options=TASK)
        theirs.reset(options=TASK)
        with pytest.raises(ForeignHandleError, match="another env worker pool"):
            pool.fork(theirs)
        with pytest.raises(ForeignHandleError, match="belongs to another worker"):
            pool.workers[0].call("fork", theirs.handle)
        assert pool.fork(mine).handle.worker == mine.handle.worker


def test_a_worker_killed_mid_step_reports_died_and_leaves_no_process():
    tier_support.require("subprocess")
    pool = EnvWorkerPool(*PY, workers=2, threads=2)
    try:
        env = pool.make()
        env.reset(options=TASK)
        env.step("<python>x = 1</python>")
        worker = pool.workers[env.handle.worker]
        sandboxes = _descendants(worker.pid)
        assert sandboxes  # the session's sandbox runs under the worker
        with ThreadPoolExecutor(1) as ex:
            fut = ex.submit(env.step, "<python>import time\ntime.sleep(60)</python>")
            assert wait_until(lambda: worker.pending)  # the step is in flight in the worker
            os.kill(worker.pid, signal.SIGKILL)
            obs, reward, terminated, truncated, info = fut.result(timeout=60)
        assert (obs, terminated, truncated) == ("", False, True) and env.died is not None and env.lost
        assert "worker_died" in info
        with pytest.raises(Exception, match="died"):
            env.fork()
        assert wait_until(lambda: all(_gone(p) for p in sandboxes))
        assert worker.pid not in [p for p, _ in children(os.getpid())]  # reaped, no zombie
        fresh = pool.make()  # the dead slot is replaced by a new worker
        assert pool.generations[env.handle.worker] == 1
        fresh.reset(options=TASK)
        assert "7" in fresh.step("<python>print(3 + 4)</python>")[0]
    finally:
        pool.close()
    assert wait_until(lambda: not [p for p, _ in children(os.getpid()) if p in (w.pid for w in pool.workers)])


def test_the_rollout_resamples_the_trees_of_a_worker_that_died(tmp_path):
    flag = tmp_path / "died"
    with EnvWorkerPool("test/DieOnce-v0", {"flag": str(flag)}, workers=2,
                       imports=("tests.helpers.worker_envs",)) as pool:
        agent = Agent(ScriptedBackend(calculator_script(0.0, calls=2)), CharTokenizer(), max_response_tokens=4000,
                      tool_workers=4)
        roll = ARPORollout(agent, BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2), pool.make,
                           np.random.default_rng(0))
        batch = roll.run([{"question": "What is 2 + 2?", "answer": "4"}] * 2, agent_params())
        assert flag.exists() and batch.stats.resampled >= 1
        assert all(len(t.leaves) == 4 for t in batch.trees)
        assert all(leaf.terminated and leaf.reward > 0 for t in batch.trees for leaf in t.leaves)
        pids = [w.pid for w in pool.workers]
    assert wait_until(lambda: all(_gone(p) for p in pids))


def agent_params():
    from arpo_env.agent import SamplingParams
    return SamplingParams(temperature=1.0, max_new_tokens=200)


def test_calls_to_envs_of_one_worker_run_concurrently():
    with EnvWorkerPool("test/Barrier-v0", workers=1, threads=2, imports=("tests.helpers.worker_envs",)) as pool:
        a, b = pool.make(), pool.make()
        assert a.handle.worker == b.handle.worker
        for env in (a, b):
            env.reset(options=TASK)
        with ThreadPoolExecutor(2) as ex:
            outs = list(ex.map(lambda e: e.step("BARRIER")[0], (a, b)))
        assert outs == ["together", "together"]
