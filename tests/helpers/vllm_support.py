"""Finding the vLLM venv for the tests that run vLLM for real (``scripts/setup_vllm_venv.sh``)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def vllm_python() -> str:
    """The venv's python; skips the test when there is none, or FAILS when ``ARPO_REQUIRE_VLLM=1``
    (scripts/test.sh sets it after building the venv, so CI never skips these tests silently)."""
    from arpo_env.agents.models import cache_dir
    cand = os.environ.get("ARPO_VLLM_PYTHON") or str(cache_dir() / "venv-vllm" / "bin" / "python")
    ok = Path(cand).exists() and subprocess.run([cand, "-c", "import vllm"], capture_output=True,
                                                timeout=300).returncode == 0
    if ok:
        return cand
    msg = f"no vLLM venv at {cand} (bash scripts/setup_vllm_venv.sh)"
    if os.environ.get("ARPO_REQUIRE_VLLM") == "1":
        pytest.fail(msg)
    pytest.skip(msg)
