"""Deadlines: abandon a blocking call that has no timeout of its own, and one total deadline for a block of
network I/O (read by :mod:`arpo_env.http_deadline`'s sockets)."""
from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("arpo_env_deadline", default=None)


def run_with_deadline(fn: Callable[[], Any], timeout: float, *, name: str = "deadline-call") -> Any:
    """``fn()``'s result, or its exception re-raised; ``TimeoutError`` if it has not returned after
    ``timeout`` seconds. The call runs in a daemon thread that is abandoned, not stopped, on timeout:
    use it only for calls that end on their own eventually and hold nothing the caller needs back."""
    box: queue.Queue = queue.Queue(maxsize=1)

    def target() -> None:
        try:
            box.put((True, fn()))
        except BaseException as exc:  # handed to the caller
            box.put((False, exc))

    threading.Thread(target=target, daemon=True, name=name).start()
    try:
        ok, value = box.get(timeout=max(0.01, timeout))
    except queue.Empty:
        raise TimeoutError(f"no answer within {timeout:.1f} s") from None
    if ok:
        return value
    raise value


@contextmanager
def total_deadline(seconds: float) -> Iterator[float]:
    """Within the block, :func:`time_left` counts down from ``seconds`` (an enclosing, earlier deadline
    wins). Per thread and per asyncio task (a context variable); yields the deadline (``time.monotonic``)."""
    outer = _DEADLINE.get()
    deadline = time.monotonic() + seconds
    if outer is not None:
        deadline = min(deadline, outer)
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    """Seconds left before the current :func:`total_deadline` (may be <= 0); None outside one."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()
