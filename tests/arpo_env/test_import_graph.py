"""The project's imports form a DAG (module-level and function-level imports alike), and the layers point
one way: core imports none of envs/agents/benchmarks/trainers; envs and agents only the core; benchmarks
not the trainers."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"arpo_env": "arpo_env", "arpo_env.envs": "envs", "arpo_env.agents": "agents",
           "arpo_env.benchmarks": "benchmarks", "arpo_env.trainers": "trainers"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = path
    return mods


def _graph() -> dict[str, set[str]]:
    """Module -> project modules it imports; ``from pkg import submodule`` counts as the submodule."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = subs if all(s in mods for s in subs) else [base, *[s for s in subs if s in mods]]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_finder_sees_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_form_a_dag():
    assert _cycle(_graph()) is None


@pytest.mark.parametrize("layer,forbidden", [
    ("arpo_env", ("arpo_env.envs", "arpo_env.agents", "arpo_env.benchmarks", "arpo_env.trainers")),
    ("arpo_env.envs", ("arpo_env.agents", "arpo_env.benchmarks", "arpo_env.trainers")),
    ("arpo_env.agents", ("arpo_env.envs", "arpo_env.benchmarks", "arpo_env.trainers")),
    ("arpo_env.benchmarks", ("arpo_env.trainers",)),
])
def test_layers_point_one_way(layer, forbidden):
    def in_layer(m: str, pkg: str) -> bool:
        if pkg == "arpo_env":
            return not any(m == p or m.startswith(p + ".") for p in list(FOLDERS)[1:])
        return m == pkg or m.startswith(pkg + ".")

    bad = [(m, t) for m, ts in _graph().items() if in_layer(m, layer) for t in ts
           if any(in_layer(t, f) for f in forbidden)]
    assert not bad
