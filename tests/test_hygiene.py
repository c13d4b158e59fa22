"""Rules the test suite keeps, checked on its own source with ``ast``.

1. No assertion on a wall-clock measurement. A duration depends on the machine and its load, so a test
   asserting one fails without a bug (the fork-time ratio that made CI flaky did). Speed is measured in
   ``bench/``; tests check the structure behind it (a fork shares its pages, a capped read stops reading)
   or, where the behaviour is a deadline, the result that the deadline produced (``Timeout``). Waiting
   for something with a bounded loop (``while ... and time.monotonic() < deadline``) stays allowed:
   it guards against hangs and asserts nothing about time.
2. No ``sys.path`` edits: the helpers are the package ``tests.helpers``.
3. No absolute path to the shared data folder: ``tests.helpers.shared_data`` finds it.

How rule 1 is checked: a value is *timed* when it comes from ``time.time``/``perf_counter``/``monotonic``/``process_time``
(and their ``_ns`` forms, ``timeit.default_timer``) or from an expression, container, comprehension or
helper-function result built from a timed value; an ``assert`` whose condition compares a timed value
fails this test. Values measured elsewhere (inside a sandbox cell, or a JSON report) are out of its
reach; those are left to review.
"""
from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time",
          "process_time_ns", "thread_time", "thread_time_ns"}
MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "appendleft"}
MACHINE_SHARED = re.compile(r"^/[^/]+/(.+/)?shared/")
"""An absolute path into a ``shared`` folder (``/work/shared/data/...``): one machine's layout."""


def _clock_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names bound to the ``time``/``timeit`` modules, names bound to a clock function itself)."""
    modules, funcs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("time", "timeit"):
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "timeit"):
            for a in node.names:
                if a.name in CLOCKS or a.name == "default_timer":
                    funcs.add(a.asname or a.name)
    return modules, funcs


def _walk(node: ast.AST, *, into_lambdas: bool):
    """``ast.walk`` that never enters a nested ``def`` (its own scope), nor a lambda unless asked."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        for c in ast.iter_child_nodes(n):
            if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef)) or (isinstance(c, ast.Lambda)
                                                                          and not into_lambdas):
                continue
            todo.append(c)


def _roots(target: ast.AST) -> set[str]:
    """The names a store to ``target`` changes: ``x`` for ``x``, ``x[i]``, ``x.a``; each of a tuple."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
        return _roots(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_roots(e) for e in target.elts)) if target.elts else set()
    return set()


class _Timed:
    """Which names (per function) and helper functions of one module hold wall-clock measurements.

    A lambda that reads the clock does not make its value a measurement (``client=lambda: ...``), but what
    it stores does (``lambda q: stamps.append(time.monotonic())`` times ``stamps``)."""

    def __init__(self, tree: ast.Module):
        self.modules, self.funcs = _clock_aliases(tree)
        self.scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        self.names: dict[ast.AST, set[str]] = {sc: set() for sc in self.scopes}
        self.helpers: set[str] = set()
        self.parent: dict[ast.AST, ast.AST] = {}  # each def's enclosing scope

        def visit(node: ast.AST, scope: ast.AST) -> None:
            for c in ast.iter_child_nodes(node):
                if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.parent[c] = scope
                    visit(c, c)
                else:
                    visit(c, scope)

        visit(tree, tree)
        changed = True
        while changed:  # every scope each round (helpers found in one scope time calls in the others)
            changed = False
            for sc in self.scopes:
                changed |= self._pass(sc)

    def is_clock_call(self, node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in self.modules:
            return f.attr in CLOCKS or f.attr == "default_timer"
        return isinstance(f, ast.Name) and (f.id in self.funcs or f.id in self.helpers)

    def timed(self, node: ast.AST | None, scope: ast.AST) -> bool:
        if node is None:
            return False
        names = self.names[scope]
        return any(self.is_clock_call(n) or (isinstance(n, ast.Name) and n.id in names)
                   for n in _walk(node, into_lambdas=False))

    def _mark(self, scope: ast.AST, target: ast.AST) -> bool:
        new = _roots(target) - self.names[scope]
        self.names[scope] |= new
        return bool(new)

    def _pass(self, scope: ast.AST) -> bool:
        changed = False
        for node in _walk(scope, into_lambdas=True):
            if isinstance(node, ast.Assign) and self.timed(node.value, scope):
                for t in node.targets:
                    changed |= self._mark(scope, t)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)) and self.timed(node.value, scope):
                changed |= self._mark(scope, node.target)
            elif isinstance(node, (ast.For, ast.comprehension)) and self.timed(node.iter, scope):
                changed |= self._mark(scope, node.target)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in MUTATORS and any(self.timed(a, scope) for a in node.args):
                # samples[k].append(elapsed) times `samples`, also in the enclosing functions (a closure's
                # list, as a stand-in client's record of its call times)
                sc: ast.AST | None = scope
                while sc is not None:
                    changed |= self._mark(sc, node.func.value)
                    sc = self.parent.get(sc)
            elif isinstance(node, ast.Return) and scope is not self.scopes[0] \
                    and scope.name not in self.helpers and self.timed(node.value, scope):
                self.helpers.add(scope.name)
                changed = True
        return changed


def timing_assertions(source: str, filename: str = "<test>") -> list[str]:
    """``file:line: code`` of every assert in ``source`` that compares a wall-clock measurement."""
    tree = ast.parse(source, filename)
    timed = _Timed(tree)
    found = []
    for scope in timed.scopes:
        for node in _walk(scope, into_lambdas=True):
            if isinstance(node, ast.Assert) and any(timed.timed(c, scope) for c in ast.walk(node.test)
                                                    if isinstance(c, ast.Compare)):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node.test)[:120]}")
    return sorted(set(found))


def _sources():
    for path in sorted(TESTS.rglob("*.py")):
        yield path.relative_to(TESTS.parent), path.read_text(encoding="utf-8")


def test_no_test_asserts_a_wall_clock_measurement():
    found = [hit for rel, src in _sources() for hit in timing_assertions(src, str(rel))]
    assert found == [], "timing assertions (assert the structure or the deadline's result instead):\n" + \
        "\n".join(found)


def test_the_timing_check_catches_the_patterns_that_existed():
    """The shapes the suite once had, each of which must be caught, and the bounded wait, which must not."""
    caught = {
        "direct": """
            import time
            def test():
                t0 = time.perf_counter()
                work()
                assert time.perf_counter() - t0 < 2.0
        """,
        "named elapsed": """
            import time
            def run(tool, code, limit=8):
                t0 = time.monotonic()
                res = tool(code)
                took = time.monotonic() - t0
                assert took < limit, took
        """,
        "throughput": """
            import time
            def test():
                t0 = time.perf_counter()
                gens = generate()
                tok_s = sum(len(g) for g in gens) / (time.perf_counter() - t0)
                assert tok_s >= 20_000
        """,
        "stamps from a lambda": """
            import time
            def test():
                stamps = []
                client = lambda q: stamps.append(time.monotonic()) or []
                assert stamps[2] - stamps[0] >= 0.38
        """,
        "ratio of helper results": """
            import statistics, time
            def _fork_ms(session):
                t0 = time.perf_counter()
                session.fork()
                return (time.perf_counter() - t0) * 1e3
            def test():
                samples = {"empty": [], "big": []}
                for name in samples:
                    samples[name].append(_fork_ms(name))
                med = {k: statistics.median(v) for k, v in samples.items()}
                assert med["big"] <= 2 * med["empty"], med
        """,
        "a nested client's call times": """
            import time
            def test():
                attempts = []
                def flaky(query):
                    attempts.append(time.monotonic())
                backend = Backend(client=flaky)
                assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.09
        """,
        "imported clock": """
            from time import monotonic as now
            def test():
                start = now()
                assert now() - start < 0.5
        """,
    }
    for name, src in caught.items():
        assert timing_assertions(textwrap.dedent(src)), f"not caught: {name}"
    allowed = """
        import time
        def test(proc, fake_clock):
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() == 0
            assert fake_clock.sleeps == [0.1, 0.2]
    """
    assert timing_assertions(textwrap.dedent(allowed)) == []


def _is_sys_path(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
        and node.value.id == "sys"


def sys_path_edits(source: str, filename: str = "<test>") -> list[str]:
    """``file:line`` of every ``sys.path.insert/append/...`` call and assignment to ``sys.path``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_sys_path(node.func.value):
            found.append(f"{filename}:{node.lineno}")
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_is_sys_path(t) for t in targets):
                found.append(f"{filename}:{node.lineno}")
    return found


def test_no_test_edits_sys_path():
    found = [hit for rel, src in _sources() for hit in sys_path_edits(src, str(rel))]
    assert found == [], "sys.path edits (import tests.helpers.<module> instead): " + ", ".join(found)
    assert sorted(sys_path_edits("import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\n")) == ["<test>:2", "<test>:3"]


def test_no_absolute_path_to_the_shared_folder():
    found = [f"{rel}:{node.lineno}: {node.value}" for rel, src in _sources() for node in ast.walk(ast.parse(src))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and MACHINE_SHARED.match(node.value)]
    assert found == [], "use tests.helpers.shared_data: " + ", ".join(found)


if __name__ == "__main__":  # python tests/test_hygiene.py: list the offending assertions
    print("\n".join(hit for rel, src in _sources() for hit in timing_assertions(src, str(rel))) or "none")
    sys.exit(0)
