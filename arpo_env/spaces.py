"""A Gymnasium space for free text: any ``str`` up to a maximum length (tool output is arbitrary Unicode)."""
from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium import spaces

#: Characters that ``sample()`` draws from: printable ASCII (tags included), a few non-ASCII letters.
SAMPLE_CHARSET = string.printable + "éßπ中文🙂"


class UnicodeText(spaces.Text):
    """Like :class:`gymnasium.spaces.Text`, but ``contains`` accepts any Unicode string within the length
    bounds, since observations carry arbitrary tool output. ``sample`` draws from :data:`SAMPLE_CHARSET`."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None):
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, UnicodeText) and self.min_length == other.min_length
                and self.max_length == other.max_length)
