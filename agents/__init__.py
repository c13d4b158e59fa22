"""agents: the LLM agent layer (see README.md, section Agents).

- :class:`Agent`: the batched multi-turn rollout loop over any token-in/token-out backend
  (``arpo_env.Agent`` protocol), with the pieces the ARPO trainer reuses (``prompt_ids``,
  ``observation_ids``, ``start``/``advance``/``finish``, forkable ``RolloutState``).
- :func:`load_agent`: an agent over a named backend (``hf`` default with the embedded SmolLM2, ``vllm``,
  ``openai``).
- Backends in :mod:`arpo_env.agents.backends`; tiny test models in :mod:`arpo_env.agents.testing`; a scripted policy agent
  in :mod:`arpo_env.agents.scripted`; a ``TextCompleter`` adapter in :mod:`arpo_env.agents.completer`.

Importing this package does not import torch (backends import their libraries when built).
"""
from __future__ import annotations

from typing import Any

from arpo_env.agents.rollout import Agent, RolloutState

AGENT_OPTIONS = ("max_response_tokens", "tool_workers")


def load_agent(backend: str = "hf", model: str | None = None, *, tokenizer: Any = None, **kw: Any) -> Agent:
    """An :class:`Agent` over backend ``backend`` (``hf``, ``vllm`` or ``openai``).

    ``model``: a local model directory or hub id; ``None`` means the embedded SmolLM2-135M-Instruct (for
    ``openai``: the served model's name, and ``base_url=`` is required). ``tokenizer``: a tokenizer or a
    path; by default the model's (for ``openai``: the embedded SmolLM2's when ``model`` is not a local
    path). ``max_response_tokens`` and ``tool_workers`` go to the agent, other keywords to the backend.
    """
    from arpo_env.agents.backends import make_backend
    agent_kw = {k: kw.pop(k) for k in AGENT_OPTIONS if k in kw}
    be = make_backend(backend, model, **kw)
    tok = tokenizer
    if isinstance(tok, str) or (tok is None and getattr(be, "tokenizer", None) is None):
        from arpo_env.agents.models import load_tokenizer
        tok = load_tokenizer(tok if isinstance(tok, str) else model)
    elif tok is None:
        tok = be.tokenizer
    return Agent(be, tok, **agent_kw)


__all__ = ["Agent", "RolloutState", "load_agent"]
