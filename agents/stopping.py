"""Stop-string detection on generated token ids, without ever re-encoding text.

After each new token, the tail of the generated ids is decoded (only enough tokens to contain the longest
stop string) and searched for every stop string. A stop string is reported once its last character has
been generated; the token that completes it is kept (the text may run a few characters past the stop
string when that token carries more). The ids are never modified.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class StopChecker:
    """Finds the first stop string completed by the newest token of a growing id list."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = tuple(s for s in dict.fromkeys(stops) if s)
        # a token decodes to at least one character (or a byte fragment); +2 covers fragments at the edge
        self.window = max((len(s) for s in self.stops), default=0) + 2

    def __call__(self, generated: Sequence[int]) -> str | None:
        """The stop string that ends within the newest token, or ``None``."""
        if not self.stops or not generated:
            return None
        # checked after every token, so any stop string in the tail ends in the newest token (an earlier
        # one would have stopped generation already)
        tail = self.tokenizer.decode(list(generated[-self.window:]), skip_special_tokens=False)
        for s in self.stops:
            if s in tail:
                return s
        return None
