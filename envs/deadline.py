"""Abandon a blocking call that has no timeout of its own (a DNS lookup, a third-party client)."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


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
