"""arpo_env.config: one helper splits a dataclass's fields out of kwargs; build names unknown options."""
from dataclasses import dataclass

import pytest

from arpo_env.config import build, split_fields


@dataclass
class Knobs:
    alpha: float = 0.5
    beta: int = 2


def test_split_fields_leaves_the_input_alone():
    kwargs = {"alpha": 1.0, "gamma": 3, "beta": 4}
    mine, rest = split_fields(Knobs, kwargs)
    assert (mine, rest) == ({"alpha": 1.0, "beta": 4}, {"gamma": 3})
    assert kwargs == {"alpha": 1.0, "gamma": 3, "beta": 4}
    mine, rest = split_fields(Knobs, kwargs, exclude=("beta",))
    assert (mine, rest) == ({"alpha": 1.0}, {"gamma": 3, "beta": 4})


def test_build_overrides_a_base_and_names_unknown_options():
    assert build(Knobs, Knobs(alpha=0.1), {"beta": 7}) == Knobs(alpha=0.1, beta=7)
    assert build(Knobs) == Knobs()
    with pytest.raises(TypeError, match=r"MyEnv got unknown options \['alpah'\]; did you mean 'alpha'\?"):
        build(Knobs, None, {"alpah": 1.0}, owner="MyEnv")
