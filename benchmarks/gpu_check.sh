#!/usr/bin/env bash
# Throughput benchmark on a CUDA GPU, in one go (under 10 minutes on an H100):
#   bash benchmarks/gpu_check.sh
# Installs the working tree into a venv that sees the machine's preinstalled torch (no torch download): the
# benchmark's dependencies from PyPI, or offline from wheels carried in .whl/, then `pip install -e .`.
# Runs benchmarks/throughput.py on the GPU (bf16 autocast on both sides): ModernBERT, BERT and ELECTRA, each
# against its stock set-up, presets tiny, mini, small; writes everything it prints to $OUT/gpu_throughput.txt
# and its rows to throughput-YYYYMMDD.jsonl, both in $OUT when it is set, else in benchmarks/results/.
# Extra arguments go to throughput.py (e.g. --batch-size 256 --rounds 2 --blocks bert).
#   bash benchmarks/gpu_check.sh --quick   # CPU smoke run of section 4 alone: tiny, 2 steps, no CUDA, nothing
#                                          # installed; its log goes to $OUT, else /tmp/mlm-bench/gpu_check_quick.txt
# Budget: throughput at most GPU_CHECK_TIMEOUT (210 s), section 4 at most GPU_CHECK_BUDGET (200 s), so the
# script fits 8 minutes with the set-up (not yet run on a GPU: no GPU was lent when it was written).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=0 ARGS=()
for a in "$@"; do if [ "$a" = "--quick" ]; then QUICK=1; else ARGS+=("$a"); fi; done
set -- "${ARGS[@]+"${ARGS[@]}"}"
export GPU_ENV_QUICK=$QUICK
LOG_NAME=gpu_throughput
if [ "$QUICK" = 1 ]; then LOG_NAME=gpu_check_quick OUT="${OUT:-/tmp/mlm-bench}"; fi  # a smoke run's log: not a result
# 1. the log, the python, dependencies and the working tree (benchmarks/gpu_env.sh)
GPU_LOG_NAME=$LOG_NAME source "$ROOT/benchmarks/gpu_env.sh" || exit 1

rc=0
if [ "$QUICK" = 0 ]; then  # section 2: the GPU's; --quick runs section 4 alone
# 2. the benchmark: bf16 both sides, alternating rounds; data and tokenizer are cached in /tmp/mlm-bench
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
timeout "${GPU_CHECK_TIMEOUT:-210}" "$PY" benchmarks/throughput.py --device cuda --presets tiny,mini,small,base \
  --rounds 2 --results-dir "$RESULTS" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
fi

# ---------------------------------------------------------------------------------------------------------------
# 4. the batch chosen for the GPU: `mlm pretrain` with per_device_train_batch_size left unset (mlm/batch_size.py:
#    the largest power of two from 64 that fits and raises tokens/s by 10%, up to 4096) for ModernBERT tiny,
#    mini, small and base, each a short --max_steps on a small packed corpus (builtin:pydocs, 128-token blocks,
#    made once in $AUTOBATCH_CACHE); prints the chosen batch, the learning rate and metrics.json's
#    train_tokens_per_second (which counts the first steps too: a floor). The runs share what is left of
#    GPU_CHECK_BUDGET seconds (default 200: the whole script under 8 minutes); a run with under 25 s left is
#    skipped. --quick: tiny only, 2 steps, on the CPU (batch 64, nothing searched).
say "== per_device_train_batch_size left unset: the batch chosen for this device"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
AUTOBATCH_CACHE="${AUTOBATCH_CACHE:-/tmp/mlm-bench/autobatch-pydocs-128}"
BUDGET="${GPU_CHECK_BUDGET:-200}"
if [ "$QUICK" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""
  PRESETS=(tiny) STEPS=2 DEVICE_ARGS=(--use_cpu)
else
  PRESETS=(tiny mini small base) STEPS="${GPU_AUTOBATCH_STEPS:-40}" DEVICE_ARGS=()
fi
mlm_cli() { "$PY" -m mlm "$@" -q 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
if [ ! -f "$AUTOBATCH_CACHE/packed/stats.json" ]; then
  rm -rf "$AUTOBATCH_CACHE"
  mlm_cli prepare --corpus builtin:pydocs --output_dir "$AUTOBATCH_CACHE/data" \
    && mlm_cli train-tokenizer --data_dir "$AUTOBATCH_CACHE/data" --output_dir "$AUTOBATCH_CACHE/tok" \
         --vocab_size 8192 \
    && mlm_cli pack --data_dir "$AUTOBATCH_CACHE/data" --tokenizer_dir "$AUTOBATCH_CACHE/tok" \
         --output_dir "$AUTOBATCH_CACHE/packed" --max_seq_length 128 \
    || { say "error: the packed corpus for section 4 could not be made"; rc=1; PRESETS=(); }
fi
left=${#PRESETS[@]}
for preset in "${PRESETS[@]+"${PRESETS[@]}"}"; do
  remaining=$((BUDGET - SECONDS))
  share=$((remaining / left)); [ "$share" -gt 150 ] && share=150
  left=$((left - 1))
  if [ "$share" -lt 25 ]; then
    say "== $preset: skipped, ${remaining}s left of the ${BUDGET}s budget"
    continue
  fi
  run_dir="$AUTOBATCH_CACHE/run-$preset"
  rm -rf "$run_dir"
  say "== mlm pretrain --preset $preset --architecture modernbert, batch unset, $STEPS steps (limit ${share}s)"
  timeout "$share" "$PY" -m mlm pretrain --data_dir "$AUTOBATCH_CACHE/packed" --output_dir "$run_dir" \
    --preset "$preset" --architecture modernbert --max_steps "$STEPS" --eval_steps 0 --save_steps 0 \
    --max_eval_samples 64 --logging_steps 1000 --disable_tqdm "${DEVICE_ARGS[@]+"${DEVICE_ARGS[@]}"}" 2>&1 \
    | grep -v "^{" | tee -a "$LOG"
  step_rc=${PIPESTATUS[0]}
  if [ "$step_rc" -ne 0 ]; then
    say "== $preset: exit $step_rc"; rc=$step_rc; continue
  fi
  "$PY" - "$run_dir" "$preset" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
run, preset = Path(sys.argv[1]), sys.argv[2]
config = json.loads((run / "mlm_step.json").read_text())["config"]  # the config the run resolved
metrics = json.loads((run / "metrics.json").read_text())
rate = config["learning_rate"]
print(f"[{preset}] per_device_train_batch_size {config['per_device_train_batch_size']}, learning_rate "
      f"{'default for the blocks' if rate is None else f'{rate:.3g}'}, "
      f"train_tokens_per_second {metrics['train_tokens_per_second']:,.0f} ({metrics['steps']} steps)")
PYEOF
done
say "== exit $rc; output in $LOG"
exit "$rc"
