"""Building agents and judges for the command line, through the ``agents`` package when it is installed.

``backend="oracle"`` gives :class:`arpo_env.benchmarks.oracle.OracleAgent` (no model; checks the harness).
Every other backend goes to ``agents.load_agent(backend=, model=)``. A judge is any object with
``complete(messages, max_new_tokens)`` (:class:`arpo_env.TextCompleter`); an agent that is not one itself
may expose one as ``.completer`` or ``.as_completer()``.
"""
from __future__ import annotations

from typing import Any

from arpo_env.agent import TextCompleter
from arpo_env.extras import MissingExtra


def load_agent(backend: str = "hf", model: str | None = None, **kwargs: Any) -> Any:
    """An :class:`arpo_env.Agent` for ``backend``/``model``."""
    if backend == "oracle":
        from arpo_env.benchmarks.oracle import OracleAgent

        acc = float(kwargs.pop("accuracy", 1.0))
        return OracleAgent(accuracy=acc, **kwargs)
    try:
        from arpo_env import agents
        loader = agents.load_agent
    except MissingExtra:
        raise
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"the agents package with load_agent() is needed for backend {backend!r} "
                           f"({exc}); use --backend oracle to check the harness without a model") from None
    return loader(backend=backend, model=model, **kwargs)


def as_completer(obj: Any) -> TextCompleter:
    """``obj`` as a :class:`TextCompleter`, or ``TypeError`` saying why not."""
    if isinstance(obj, TextCompleter):
        return obj
    if getattr(obj, "backend", None) is not None and getattr(obj, "tokenizer", None) is not None:
        from arpo_env.agents.completer import BackendCompleter  # greedy decoding, as a judge should

        return BackendCompleter(obj.backend, obj.tokenizer)
    for attr in ("completer", "as_completer"):
        c = getattr(obj, attr, None)
        c = c() if callable(c) and not isinstance(c, TextCompleter) else c
        if isinstance(c, TextCompleter):
            return c
    raise TypeError(f"{type(obj).__name__} cannot act as a judge: it has no complete(messages, max_new_tokens)")


def load_judge(model: str, backend: str = "hf", max_new_tokens: int | None = None) -> Any:
    """An :class:`arpo_env.benchmarks.judge.LLMJudge` backed by ``model`` on ``backend``
    (``max_new_tokens``: the reply's budget, default :data:`~arpo_env.benchmarks.judge.DEFAULT_JUDGE_TOKENS`)."""
    from arpo_env.benchmarks.judge import DEFAULT_JUDGE_TOKENS, LLMJudge

    return LLMJudge(as_completer(load_agent(backend=backend, model=model)), name=f"{backend}:{model}",
                    max_new_tokens=max_new_tokens or DEFAULT_JUDGE_TOKENS)
