"""Token-in/token-out generation backends: ``hf`` (transformers, embedded default), ``vllm`` (offline
engine, optional extra) and ``openai`` (any OpenAI-compatible completions server).

Each module imports its heavy dependency lazily; :func:`make_backend` builds one by name.
"""
from __future__ import annotations

from typing import Any

BACKENDS = ("hf", "vllm", "openai")


def make_backend(name: str = "hf", model: str | None = None, **kwargs: Any) -> Any:
    """Build a backend by name. ``model``: a local model directory or hub id (``None``: embedded SmolLM2
    for ``hf``/``vllm``); for ``openai`` it is the served model name and ``base_url=`` is required."""
    if name == "hf":
        from arpo_env.agents.backends.hf import HFBackend
        return HFBackend.from_pretrained(model, **kwargs)
    if name == "vllm":
        from arpo_env.agents.backends.vllm import VLLMBackend
        return VLLMBackend.from_pretrained(model, **kwargs)
    if name == "openai":
        from arpo_env.agents.backends.openai import OpenAIBackend
        return OpenAIBackend(model=model, **kwargs)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
