"""The project's imports form a DAG (module-level and function-level imports alike). That the layers point
one way is tests/test_layering.py."""
import ast
from pathlib import Path

from tests.helpers.imports import imported_modules

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
        found = [(t, line) for t, line in imported_modules(ast.parse(path.read_text()), package)
                 if t in mods and t != name]
        # ``from pkg import sub`` names pkg and pkg.sub on one line: the edge is to the submodule alone
        graph[name].update(t for t, line in found
                           if not any(u.startswith(t + ".") and at == line for u, at in found))
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
