"""Finding the vLLM venv for the tests that run vLLM for real (``scripts/setup_vllm_venv.sh``)."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: run in the venv, outside the repository (whose top-level arpo_env/ would shadow the install)
PROBE = "import vllm, arpo_env.agents.backends.vllm as m; print(m.__file__)"


def vllm_python() -> str:
    """The venv's python, with vLLM and this checkout installed (the script installs it editable); skips the
    test when there is none, or FAILS when ``ARPO_REQUIRE_VLLM=1`` (scripts/test.sh sets it after building
    the venv, so CI never skips these tests silently)."""
    from arpo_env.agents.models import cache_dir
    cand = os.environ.get("ARPO_VLLM_PYTHON") or str(cache_dir() / "venv-vllm" / "bin" / "python")
    msg = f"no vLLM venv at {cand} (bash scripts/setup_vllm_venv.sh)"
    if Path(cand).exists():
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with tempfile.TemporaryDirectory() as cwd:
            proc = subprocess.run([cand, "-c", PROBE], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
        where = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
        if where and Path(where[0]).resolve() == (ROOT / "agents" / "backends" / "vllm.py").resolve():
            return cand
        msg = (f"the vLLM venv at {cand} does not import vllm and this checkout's arpo_env.agents "
               f"({(where or proc.stderr.strip().splitlines() or ['?'])[-1]}); rerun bash scripts/setup_vllm_venv.sh")
    if os.environ.get("ARPO_REQUIRE_VLLM") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def vllm_env(**extra: str) -> dict[str, str]:
    """The environment for processes under the venv's python: this one without ``PYTHONPATH`` (the venv has
    the project installed), plus vLLM's CPU settings and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu", **extra})
    return env
