"""Checks shared by the env tests."""
from __future__ import annotations

import warnings

from gymnasium.utils.env_checker import check_env


def strict_check_env(env) -> None:
    """Gymnasium's checker with every warning an error (as the foundation's contract test does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)
