"""Bounded waits for a condition (processes gone, a pool refilled): a hang guard, never a time assertion."""
from __future__ import annotations

import time
from collections.abc import Callable

PATIENCE = 60.0
"""Default bound in seconds: far above what any condition here needs on an idle machine, so a busy CI
machine decides nothing; the test then asserts the condition itself."""


def wait_until(cond: Callable[[], object], timeout: float = PATIENCE, poll: float = 0.05) -> bool:
    """Poll ``cond`` until it is truthy or ``timeout`` seconds have passed; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
