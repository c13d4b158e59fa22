"""Building agents and judges for the command line, through the ``agents`` package when it is installed.

``backend="oracle"`` gives :class:`arpo_env.benchmarks.oracle.OracleAgent` (no model; checks the harness).
``backend="policy"`` plays a Python function named by ``model="module:function"`` with
:class:`arpo_env.agents.scripted.ScriptedAgent`: ``function(env, turn, observation) -> action text``
(the scripted agent's :data:`~arpo_env.agents.scripted.Policy`; ``observation`` is the prompt at turn 0,
``env.unwrapped.episode`` the episode so far). ``model="tiny"`` on ``hf`` is the random tiny Llama of
:mod:`arpo_env.agents.testing` (smoke runs, as ``arpo train --model tiny``). Every other backend goes to
``agents.load_agent(backend=, model=)``. :func:`check_backend` refuses an unknown name with the closest one. A judge is any object with
``complete(messages, max_new_tokens)`` (:class:`arpo_env.TextCompleter`); an agent that is not one itself
may expose one as ``.completer`` or ``.as_completer()``.
"""
from __future__ import annotations

import importlib
from typing import Any

from arpo_env.agent import TextCompleter
from arpo_env.config import suggest
from arpo_env.errors import UserError
from arpo_env.extras import MissingExtra

#: Every backend ``load_agent`` takes: the agents package's (``hf``, ``vllm``, ``openai``) and two without a model.
BACKENDS = ("hf", "vllm", "openai", "oracle", "policy")


def check_backend(name: str, flag: str = "--backend") -> None:
    """:class:`UserError` for a backend that is not in :data:`BACKENDS`, with the closest name."""
    if name not in BACKENDS:
        raise UserError(f"{flag}: unknown backend {name!r}{suggest(name, BACKENDS)} (backends: "
                        f"{', '.join(BACKENDS)})")


def load_policy(spec: str | None, flag: str = "--model") -> Any:
    """The callable named by ``"module:function"`` (the module is imported; the current folder counts)."""
    module, sep, attr = (spec or "").partition(":")
    if not sep or not module or not attr:
        raise UserError(f"{flag}: the policy backend needs module:function (e.g. mypolicy:policy), got {spec!r}")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        raise UserError(f"{flag} {spec}: no module {module!r} (run from its folder or put it on PYTHONPATH)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{flag} {spec}: {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{flag} {spec}: {attr!r} is not callable; it must be policy(env, turn, observation) -> str")
    return obj


def load_agent(backend: str = "hf", model: str | None = None, **kwargs: Any) -> Any:
    """An :class:`arpo_env.Agent` for ``backend``/``model`` (see the module docstring)."""
    check_backend(backend)
    if backend == "oracle":
        from arpo_env.benchmarks.oracle import OracleAgent

        acc = float(kwargs.pop("accuracy", 1.0))
        return OracleAgent(accuracy=acc, **kwargs)
    if backend == "policy":
        from arpo_env.agents.scripted import ScriptedAgent

        kwargs.pop("max_response_tokens", None)
        return ScriptedAgent(load_policy(model), **kwargs)
    if model == "tiny":
        if backend != "hf":
            raise UserError(f"--model tiny is a transformers model: use --backend hf, not {backend!r}")
        from arpo_env.agents import Agent
        from arpo_env.agents.backends.hf import HFBackend
        from arpo_env.agents.testing import tiny_model_and_tokenizer

        agent_kw = {k: kwargs.pop(k) for k in ("max_response_tokens", "tool_workers") if k in kwargs}
        tiny, tok = tiny_model_and_tokenizer()
        return Agent(HFBackend(tiny, tok, **kwargs), tok, **agent_kw)
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
