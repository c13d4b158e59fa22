"""Test doubles for the rollout: a char-level tokenizer and a backend of controlled entropy.

``ScriptedBackend`` decides each turn's text from the context (how many ``<result>`` blocks it holds) with
``script(turn, rng) -> (text, entropy)``; the turn is the number of ``<think>#`` markers in the context (scripts
start every turn with one); every generated token gets that entropy and log-prob -1.
"""
from __future__ import annotations

import numpy as np

from arpo_env.agent import EntropySource, Generation


class CharTokenizer:
    """ids = code points; no chat template, no special tokens."""

    chat_template = "plain"
    eos_token_id = None

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)

    def __len__(self):
        return 256


class ScriptedBackend:
    def __init__(self, script, seed=0):
        self.script = script
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.contexts_seen = 0

    def generate(self, contexts, params):
        self.calls += 1
        out = []
        for ctx in contexts:
            self.contexts_seen += 1
            text_ctx = "".join(chr(i) for i in ctx)
            turn = text_ctx.count("<think>#")
            text, h = self.script(turn, self.rng)
            ids = [ord(c) for c in text]
            finish = "stop"
            if len(ids) > params.max_new_tokens:
                ids, finish = ids[: params.max_new_tokens], "length"
                text = "".join(chr(i) for i in ids)
            stop = next((s for s in params.stop if text.endswith(s)), None)
            if stop is None and finish == "stop":
                finish = "eos"
            out.append(Generation(token_ids=ids, logprobs=[-1.0] * len(ids), entropies=[h] * len(ids),
                                  finish_reason=finish, stop_string=stop, entropy_source=EntropySource.EXACT,
                                  text=text))
        return out


def calculator_script(delta, h0=1.0, calls=3):
    """``calls`` calculator turns (first of entropy h0, later ones h0 + delta), then the right answer."""
    def script(turn, rng):
        if turn < calls:
            n = int(rng.integers(1000))
            return f"<think>#{n}</think><calculator>2+{turn}</calculator>", (h0 if turn == 0 else h0 + delta)
        return f"<think>#done {int(rng.integers(1000))}</think><answer>\\boxed{{4}}</answer>", h0
    return script
