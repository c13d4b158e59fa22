"""Envs for the env-worker tests (importing registers them): a calculator whose worker process dies once.

``test/DieOnce-v0``: a calculator env that, on an action containing ``die_on`` while ``flag`` does not exist
yet, creates ``flag`` and ends its whole process (``os._exit``): the worker dies mid-step exactly once."""
import os

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


try:
    arpo_env.register("test/DieOnce-v0", entry_point=DieOnceEnv)
except Exception:  # already registered
    pass
