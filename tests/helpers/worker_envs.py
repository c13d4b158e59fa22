"""Envs for the env-worker tests (importing registers them): a calculator whose worker process dies once.

``test/DieOnce-v0``: a calculator env that, on an action containing ``die_on`` while ``flag`` does not exist
yet, creates ``flag`` and ends its whole process (``os._exit``): the worker dies mid-step exactly once."""
import os
import threading

import arpo_env
from arpo_env.envs.calculator import CalculatorEnv


class DieOnceEnv(CalculatorEnv):
    def __init__(self, flag: str = "", die_on: str = "2+1", **kw):
        self.flag, self.die_on = flag, die_on
        super().__init__(**kw)

    def step(self, action):
        if self.flag and self.die_on in action:
            try:
                os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(3)
        return super().step(action)


class BarrierEnv(CalculatorEnv):
    """A step whose action contains ``BARRIER`` waits (bounded) for a second such step in the same process:
    its observation says ``together`` when both ran at once, ``alone`` when they were serialised."""

    barrier = threading.Barrier(2)

    def step(self, action):
        if "BARRIER" in action:
            try:
                type(self).barrier.wait(timeout=60)
                return "together", 0.0, False, False, {}
            except threading.BrokenBarrierError:
                return "alone", 0.0, False, False, {}
        return super().step(action)


for _id, _cls in (("test/DieOnce-v0", DieOnceEnv), ("test/Barrier-v0", BarrierEnv)):
    try:
        arpo_env.register(_id, entry_point=_cls)
    except Exception:  # already registered
        pass
