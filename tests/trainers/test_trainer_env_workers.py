"""The tiny-model trainer with env_workers=2 (process backend): greedy rollouts are token-for-token those
of in-process envs, and a training step runs; the workers are gone after close."""
import os

import pytest

from arpo_env.trainers.config import TrainConfig
from arpo_env.trainers.trainer import Trainer
from tests.helpers.procs import children
from tests.helpers.waiting import wait_until
from tests.trainers.test_trainer import TINY


@pytest.mark.slow
def test_env_workers_give_the_same_greedy_rollouts_and_train(tmp_path):
    runs = {}
    for workers in (0, 2):
        cfg = TrainConfig(**TINY, temperature=0.0, steps=1, save_every=0, env_workers=workers,
                          output_dir=str(tmp_path / f"w{workers}"))
        with Trainer(cfg) as tr:
            tasks = [tr.tasks.get(i) for i in range(2)]
            batch = tr.collect(tasks)
            runs[workers] = [(leaf.token_ids, leaf.reward, leaf.answer) for t in batch.trees for leaf in t.leaves]
            if workers:
                pids = [w.pid for w in tr.env_pool.workers]
                assert all(p in [c for c, _ in children(os.getpid())] for p in pids)
                metrics = tr.train_step()
                assert metrics["reward"] == metrics["reward"]  # a number (the step ran through the workers)
    assert runs[2] == runs[0] and len(runs[0]) == 8
    assert wait_until(lambda: not [c for c, _ in children(os.getpid()) if c in pids])
