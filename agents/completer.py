"""``BackendCompleter``: the ``arpo_env.TextCompleter`` an env needs (summariser, judge) over any backend.

Chat messages are templated with the tokenizer's chat template, generated greedily by default, and the
reply is decoded without special tokens (EOS dropped). One call = one backend call of batch 1.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from arpo_env.agent import AgentBackend, SamplingParams


class BackendCompleter:
    """``complete(messages, max_new_tokens) -> str`` over ``backend`` and ``tokenizer``.

    ``params``: sampling settings (default greedy, no repetition penalty); ``max_new_tokens`` of each call
    overrides its ``max_new_tokens``.
    """

    def __init__(self, backend: AgentBackend, tokenizer: Any, params: SamplingParams | None = None):
        self.backend, self.tokenizer = backend, tokenizer
        self.params = params or SamplingParams(temperature=0.0, repetition_penalty=1.0)

    def complete(self, messages: list[dict[str, str]], max_new_tokens: int = 512) -> str:
        from arpo_env.agents.rollout import Agent
        ids = Agent(self.backend, self.tokenizer).prompt_ids(messages)
        params = dataclasses.replace(self.params, max_new_tokens=max_new_tokens)
        (gen,) = self.backend.generate([ids], params)
        return self.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
