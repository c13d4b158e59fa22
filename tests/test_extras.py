"""The missing-extra error: one line naming what needs the library and ``pip install 'arpo-env[NAME]'``;
every optional import of the package goes through it; ``arpo`` prints the line and exits 2."""
from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import arpo_env
from arpo_env import extras
from arpo_env.cli import main
from arpo_env.extras import EXTRAS, MissingExtra, missing_extra, require

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("arpo_env", "envs", "agents", "benchmarks", "trainers")
#: import names of the optional libraries (every extra's, plus what they bring along that we import)
OPTIONAL = {m for mods in EXTRAS.values() for m in mods}


def test_require_returns_the_module_when_installed():
    assert require("search", "json") is json  # any importable module: the extra is only for the message


def test_a_missing_module_gives_one_line_with_the_pip_command():
    with pytest.raises(MissingExtra) as info:
        require("search", "arpo_no_such_module", needed_by="the thing")
    exc = info.value
    assert str(exc) == "the thing needs 'arpo_no_such_module', which is not installed: pip install 'arpo-env[search]'"
    assert isinstance(exc, ModuleNotFoundError) and isinstance(exc, ImportError)
    assert (exc.extra, exc.module, exc.name) == ("search", "arpo_no_such_module", "arpo_no_such_module")
    assert "\n" not in str(exc)


def test_needed_by_defaults_to_the_calling_module_and_a_hint_stays_on_the_line():
    with pytest.raises(MissingExtra, match=rf"^{__name__} needs 'arpo_no_such\.sub'.*\[vllm\]' \(use x y\)$"):
        require("vllm", "arpo_no_such.sub", hint="use x\n   y")


def test_missing_extra_survives_pickling():  # errors cross process boundaries (sandbox, workers)
    exc = pickle.loads(pickle.dumps(MissingExtra("bench", "math_verify", "the metric", "h")))
    assert str(exc) == str(MissingExtra("bench", "math_verify", "the metric", "h")) and exc.extra == "bench"


def test_a_broken_installed_module_is_not_reported_as_missing(tmp_path, monkeypatch):
    (tmp_path / "arpo_broken_pkg.py").write_text("import arpo_dependency_that_is_absent\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("search", "arpo_broken_pkg")
    assert not isinstance(info.value, MissingExtra) and info.value.name == "arpo_dependency_that_is_absent"


def test_unknown_extras_are_rejected():
    with pytest.raises(ValueError, match="unknown extra"):
        require("gpu", "json")
    with pytest.raises(ValueError, match="unknown extra"):
        extras.missing_modules("gpu")


def test_missing_extra_converts_only_the_libraries_of_the_extra():
    converted = missing_extra("train", ModuleNotFoundError("No module named 'torch'", name="torch"), needed_by="x")
    assert isinstance(converted, MissingExtra) and "pip install 'arpo-env[train]'" in str(converted)
    other = ModuleNotFoundError("No module named 'sympy'", name="sympy")  # torch is there, its dependency is not
    assert missing_extra("train", other) is other


def test_missing_modules_checks_without_importing(monkeypatch):
    monkeypatch.setitem(EXTRAS, "search", ("json", "arpo_no_such_module"))
    assert extras.missing_modules("search") == ["arpo_no_such_module"]
    assert not extras.is_installed("search") and extras.is_installed("python")


def _optional_imports(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        out += [(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in OPTIONAL]
    return out


def _guarded(tree: ast.AST) -> tuple[set[str], set[int]]:
    """Libraries named by a literal ``require(extra, "lib...")`` call, and the lines of imports inside a
    ``try`` whose handler calls ``missing_extra``."""
    required, lines = set(), set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "require"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
            required.add(str(node.args[1].value).split(".")[0])
        if isinstance(node, ast.Try) and any(
                isinstance(n, ast.Call) and getattr(n.func, "id", None) == "missing_extra"
                for h in node.handlers for n in ast.walk(h)):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return required, lines


def test_every_optional_import_goes_through_the_extras_helper():
    """Each file that imports an optional library also ``require``s it, or wraps a top-level import in a
    ``try`` that converts the error with ``missing_extra`` (so the error names the extra)."""
    bad, seen = [], set()
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            required, lines = _guarded(tree)
            for lib, line in _optional_imports(tree):
                seen.add(lib)
                if lib not in required and line not in lines:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: import of {lib} not routed through arpo_env.extras")
    assert {"torch", "transformers", "bm25s", "ddgs", "httpx", "math_verify", "peft"} <= seen
    assert not bad, "\n".join(bad)


def test_the_checker_catches_an_unguarded_import():
    tree = ast.parse("def f():\n    import bm25s\n")
    required, lines = _guarded(tree)
    assert [lib for lib, line in _optional_imports(tree) if lib not in required and line not in lines] == ["bm25s"]


def test_arpo_envs_lists_envs_whose_extras_are_missing(monkeypatch, capsys):
    monkeypatch.setitem(EXTRAS, "search", ("arpo_no_such_module",))
    with pytest.raises(SystemExit) as info:
        main(["envs", "--json"])
    assert info.value.code == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["arpo/Search-v0"]["missing_extras"] == ["search"] and rows["arpo/Search-v0"]["tools"] == "search"
    assert rows["arpo/MultiTool-v0"]["extras"] == ["search"]
    assert rows["arpo/Calculator-v0"]["extras"] == [] and rows["arpo/Calculator-v0"]["missing_extras"] == []
    with pytest.raises(SystemExit):
        main(["envs"])
    out = capsys.readouterr().out
    assert "(missing)" in out and "Extras not installed: search: pip install 'arpo-env[search]'" in out


def test_a_plugin_env_needing_a_missing_extra_is_listed_with_the_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "arpo_plugin_needs_vllm.py").write_text(textwrap.dedent("""
        from arpo_env.extras import require
        require("vllm", "arpo_no_such_vllm", needed_by="the plugin env")
        class Env: ...
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    arpo_env.register("test/NeedsVllm-v0", "arpo_plugin_needs_vllm:Env")
    try:
        with pytest.raises(SystemExit):
            main(["envs", "--json"])
    finally:
        from arpo_env import registry
        registry._RECORDS.pop("test/NeedsVllm-v0")
    row = next(r for r in json.loads(capsys.readouterr().out) if r["id"] == "test/NeedsVllm-v0")
    assert row["missing_extras"] == ["vllm"] and "pip install 'arpo-env[vllm]'" in row["description"]


def test_the_cli_prints_one_line_and_exits_2_on_a_missing_extra(tmp_path):
    """``arpo episode arpo/Search-v0`` with bm25s and PyStemmer hidden (``None`` in ``sys.modules``)."""
    code = ("import sys; sys.modules['bm25s'] = sys.modules['Stemmer'] = None; "
            "from arpo_env.cli import main; main(['episode', 'arpo/Search-v0'])")
    env = {**os.environ, "ARPO_CACHE_DIR": str(tmp_path / "cache")}  # no index built earlier to reuse
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("arpo: ") and lines[0].endswith("pip install 'arpo-env[search]'")


def test_the_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    extras_of = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras_of) - {"all", "dev"} == set(EXTRAS)
    assert extras_of["python"] == [] and EXTRAS["python"] == ()
    assert "arpo-env[agents]" in extras_of["train"]  # the trainer runs the agents' backends
    everything = {e for item in extras_of["all"] for e in item.partition("[")[2].rstrip("]").split(",")}
    # vllm pins its own torch; ray is 240 MB installed and only for scale-out: neither is part of `all`
    assert everything == set(EXTRAS) - {"vllm", "ray"}


def test_the_readme_install_merges_the_tool_use_adapter():
    """The README's main command installs ``agents`` (not ``train``): the embedded default's adapter needs peft
    there, or ``arpo demo`` silently runs the raw model (0 tool calls)."""
    import tomllib
    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert any(dep.split(">")[0].split("=")[0].strip() == "peft" for dep in extras["agents"])
