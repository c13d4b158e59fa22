"""``arpo`` sub-commands contributed by the environments (each env family keeps its own ``cli`` module)."""
from __future__ import annotations

import importlib

import typer

#: Modules exposing ``register(app)`` (each imports its heavy libraries inside its commands).
ENV_COMMAND_MODULES = ("arpo_env.envs.python.cli", "arpo_env.envs.search.cli")


def register(app: typer.Typer) -> None:
    for name in ENV_COMMAND_MODULES:
        importlib.import_module(name).register(app)
