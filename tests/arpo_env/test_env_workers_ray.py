"""The Ray backend of the env workers: a Python-v0 fork inside a Ray actor keeps parent and child apart, a
foreign handle is refused, and a killed actor marks its envs dead with no sandbox left behind."""
import os
import signal

import pytest

from arpo_env.env_workers import EnvWorkerPool, ForeignHandleError, WorkerDied
from tests.arpo_env.test_env_workers import PY, TASK, _descendants, _gone, check_fork_keeps_state_apart
from tests.helpers import tier_support
from tests.helpers.waiting import wait_until

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray")  # scripts/test.sh installs the ray extra, so CI runs these


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    ray.init(num_cpus=2, _temp_dir=str(tmp_path_factory.mktemp("ray")), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_python_fork_inside_a_ray_actor(ray_local):
    from arpo_env.env_workers_ray import ray_worker_factory
    tier_support.require("subprocess")
    factory = ray_worker_factory(*PY, threads=2, num_cpus=0.5)
    with EnvWorkerPool(*PY, workers=1, worker_factory=factory) as pool, \
            EnvWorkerPool(*PY, workers=1, worker_factory=factory) as other:
        check_fork_keeps_state_apart(pool)
        mine, theirs = pool.make(), other.make()
        mine.reset(options=TASK)
        theirs.reset(options=TASK)
        with pytest.raises(ForeignHandleError):
            pool.fork(theirs)
        with pytest.raises(ForeignHandleError, match="belongs to another worker"):
            pool.workers[0].call("fork", theirs.handle)
        # kill the actor's process mid-episode: its env is marked dead, its sandbox goes with it
        mine.step("<python>x = 1</python>")
        pid = pool.workers[0].call("pid", None)
        sandboxes = _descendants(pid)
        assert sandboxes
        os.kill(pid, signal.SIGKILL)
        obs, _, _, truncated, _ = mine.step("<python>print(x)</python>")
        assert truncated and mine.died is not None
        with pytest.raises(WorkerDied):
            mine.fork()
        assert wait_until(lambda: all(_gone(p) for p in sandboxes))
