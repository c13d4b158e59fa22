"""``arpo`` sub-commands contributed by the environments (each env family keeps its own ``cli`` module)."""
from __future__ import annotations

import importlib

import typer

#: Modules exposing ``register(app)``; missing ones (not built yet) are skipped.
ENV_COMMAND_MODULES = ("arpo_env.envs.python.cli", "arpo_env.envs.search.cli", "arpo_env.envs.browse.cli")


def register(app: typer.Typer) -> None:
    for name in ENV_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(app)
