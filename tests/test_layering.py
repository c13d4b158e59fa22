"""Dependencies point one way: core <- envs, agents <- benchmarks <- trainers <- bench.

Every ``import`` statement (module level and inside functions) of every .py file of the project is read
with :mod:`ast` and mapped to the layer it imports from:

- core (``arpo_env/*.py``) imports none of envs, agents, benchmarks, trainers;
- envs import only the core (never agents, benchmarks, trainers);
- agents import only the core (never envs, benchmarks, trainers);
- benchmarks never import trainers;
- trainers may import all the layers below; ``bench/`` scripts may import anything;
- nothing (tests included) imports a bare ``envs``/``agents``/``benchmarks``/``trainers``: the project is
  one namespace, ``arpo_env.*``.

Not covered: imports by string (``importlib.import_module``, registry entry points such as
``"arpo_env.envs.calculator:CalculatorEnv"``, the CLI's command modules); those are the core's sanctioned
lazy way to reach the layers above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.imports import imported_modules

ROOT = Path(__file__).resolve().parents[1]

#: repository folder -> (layer, the package it installs as)
FOLDERS = {"arpo_env": ("core", "arpo_env"), "envs": ("envs", "arpo_env.envs"),
           "agents": ("agents", "arpo_env.agents"), "benchmarks": ("benchmarks", "arpo_env.benchmarks"),
           "trainers": ("trainers", "arpo_env.trainers"), "bench": ("bench", None)}
LAYERS = ("envs", "agents", "benchmarks", "trainers")
#: layer -> the layers it may import (besides itself)
ALLOWED = {"core": {"core"}, "envs": {"core"}, "agents": {"core"}, "benchmarks": {"core", "envs", "agents"},
           "trainers": {"core", "envs", "agents", "benchmarks"},
           "bench": {"core", "envs", "agents", "benchmarks", "trainers"}, "tests": set(LAYERS) | {"core"}}


def layer_of_module(name: str) -> str | None:
    """The layer a dotted module name belongs to (``None``: not the project's)."""
    parts = name.split(".")
    if parts[0] != "arpo_env":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def violations(source: str, layer: str, package: str | None = None, filename: str = "<source>") -> list[str]:
    """The upward (or bare) imports in ``source``, a file of ``layer``; ``[]`` when it follows the rules.
    One entry per statement and offending layer."""
    found: dict[tuple[int, str], str] = {}
    for name, line in imported_modules(ast.parse(source, filename), package):
        if name.split(".")[0] in LAYERS:
            found.setdefault((line, "bare"), f"{filename}:{line}: bare import {name!r} (use arpo_env.{name})")
            continue
        target = layer_of_module(name)
        if target is not None and target != layer and target not in ALLOWED[layer]:
            found.setdefault((line, target), f"{filename}:{line}: {layer} imports {name} ({target})")
    return [found[k] for k in sorted(found)]


def project_files() -> list[tuple[Path, str, str | None]]:
    """(file, layer, package of the file) for every .py file of the layered folders and of tests/."""
    files = []
    for folder, (layer, package) in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).parent.parts
            files.append((path, layer, ".".join([package, *rel]) if package else None))
    files += [(p, "tests", None) for p in sorted((ROOT / "tests").rglob("*.py"))]
    return files


def test_the_project_has_no_upward_imports():
    files = project_files()
    assert {layer for _, layer, _ in files} == set(ALLOWED)  # every layer was found and read
    bad = [v for path, layer, package in files
           for v in violations(path.read_text(encoding="utf-8"), layer, package, str(path.relative_to(ROOT)))]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer,source", [
    ("core", "import arpo_env.envs.calculator"),
    ("core", "def f():\n    from arpo_env.agents import load_agent\n"),  # inside a function too
    ("core", "from arpo_env import trainers"),
    ("envs", "from arpo_env.agents.rollout import Agent"),
    ("envs", "def f():\n    import arpo_env.benchmarks.metrics\n"),
    ("agents", "from arpo_env.envs.search import SearchTool"),
    ("agents", "from arpo_env.trainers.losses import kl_k3"),
    ("benchmarks", "class A:\n    def m(self):\n        from arpo_env.trainers import trainer\n"),
    ("bench", "import agents"),  # bare names are never right, even where anything may be imported
    ("tests", "from envs.cli import register"),
])
def test_an_upward_or_bare_import_is_reported(layer, source):
    assert len(violations(source, layer)) == 1


def test_relative_imports_are_resolved():
    assert violations("from ..agents import rollout", "envs", package="arpo_env.envs") == [
        "<source>:1: envs imports arpo_env.agents (agents)"]
    assert violations("from . import tool", "envs", package="arpo_env.envs.search") == []


@pytest.mark.parametrize("layer,source", [
    ("core", "import arpo_env.registry\nfrom arpo_env import make\nimport gymnasium"),
    ("envs", "from arpo_env.env import TextEnv\nfrom arpo_env.envs.search import SearchTool"),
    ("agents", "from arpo_env.agent import SamplingParams\nfrom tokenizers import trainers"),
    ("benchmarks", "from arpo_env.agents import Agent\nfrom arpo_env.envs import calculator"),
    ("trainers", "from arpo_env.benchmarks import metrics\nfrom arpo_env.agents.backends.hf import HFBackend"),
    ("bench", "from arpo_env.trainers.trainer import Trainer"),
])
def test_allowed_imports_pass(layer, source):
    assert violations(source, layer) == []
