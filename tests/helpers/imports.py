"""Reading the project's import statements with :mod:`ast` (the layering and import-graph tests)."""
from __future__ import annotations

import ast


def imported_modules(tree: ast.AST, package: str | None) -> list[tuple[str, int]]:
    """Every module an ``import`` statement of ``tree`` names, with its line. ``from p import x`` yields
    ``p.x`` as well as ``p`` (``x`` may be a submodule: ``from arpo_env import agents``); relative imports
    are resolved against ``package``."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if package is None:
                    continue
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names if a.name != "*"]
    return out
