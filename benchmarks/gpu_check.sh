#!/usr/bin/env bash
# Throughput benchmark on a CUDA GPU, in one go (under 10 minutes on an H100):
#   bash benchmarks/gpu_check.sh
# Installs the working tree into a venv that sees the machine's preinstalled torch (no torch download): the
# benchmark's dependencies from PyPI, or offline from wheels carried in .whl/, then `pip install -e .`.
# Runs benchmarks/throughput.py on the GPU (bf16 autocast on both sides): ModernBERT, BERT and ELECTRA, each
# against its stock set-up, presets tiny, mini, small; writes everything it prints to $OUT/gpu_throughput.txt
# and its rows to throughput-YYYYMMDD.jsonl, both in $OUT when it is set, else in benchmarks/results/.
# Extra arguments go to throughput.py (e.g. --batch-size 256 --rounds 2 --blocks bert).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# 1. the log, the python, dependencies and the working tree (benchmarks/gpu_env.sh)
GPU_LOG_NAME=gpu_throughput source "$ROOT/benchmarks/gpu_env.sh" || exit 1

# 2. the benchmark: bf16 both sides, alternating rounds; data and tokenizer are cached in /tmp/mlm-bench
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
timeout "${GPU_CHECK_TIMEOUT:-540}" "$PY" benchmarks/throughput.py --device cuda --presets tiny,mini,small \
  --rounds 3 --results-dir "$RESULTS" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "== exit $rc; output in $LOG"
exit "$rc"
