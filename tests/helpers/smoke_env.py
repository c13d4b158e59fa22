"""A calculator env with a dense reward (share of digits in the response), so that a random tiny model's
samples get different rewards and a training step has non-zero advantages. Importing registers it."""
import arpo_env
from arpo_env.envs.calculator import CalculatorEnv


def digit_share(response, task):
    return sum(c.isdigit() for c in response) / max(1, len(response))


class DigitsCalculatorEnv(CalculatorEnv):
    def __init__(self, **kw):
        super().__init__(reward_fn=digit_share, **kw)


try:
    arpo_env.register("test/DigitsCalculator-v0", entry_point=DigitsCalculatorEnv)
except Exception:  # already registered
    pass
