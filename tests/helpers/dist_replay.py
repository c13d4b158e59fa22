"""Rollouts that do not depend on how prompts are shared among ranks (imported by ``--imports``).

Importing this module makes :meth:`Trainer.collect` roll out each prompt alone, with torch's sampling
generator and the branch RNG seeded from the prompt itself, so that a world-size-2 run samples exactly the
trees a world-size-1 run samples (the model weights being equal): the distributed update is then compared
on the same rollouts. Also registers test/DigitsCalculator-v0 (:mod:`tests.helpers.smoke_env`).
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch

import tests.helpers.smoke_env  # noqa: F401  registers test/DigitsCalculator-v0
from arpo_env.trainers.arpo_rollout import RolloutBatch, RolloutStats
from arpo_env.trainers.trainer import Trainer

_collect = Trainer.collect


def _merge(stats: list[RolloutStats]) -> RolloutStats:
    out = RolloutStats()
    for f in dataclasses.fields(RolloutStats):
        values = [getattr(s, f.name) for s in stats]
        setattr(out, f.name, [v for vs in values for v in vs] if isinstance(values[0], list) else sum(values))
    return out


def collect_per_prompt(self: Trainer, tasks):
    batches = []
    for task in tasks:
        key = zlib.crc32(repr(task).encode())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key)
            self.branch_rng.bit_generator.state = np.random.default_rng(key).bit_generator.state
            batches.append(_collect(self, [task]))
    return RolloutBatch([t for b in batches for t in b.trees], _merge([b.stats for b in batches]))


Trainer.collect = collect_per_prompt  # type: ignore[method-assign]
