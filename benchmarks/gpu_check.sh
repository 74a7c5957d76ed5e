#!/usr/bin/env bash
# Throughput benchmark on a CUDA GPU, in one go (under 10 minutes on an H100):
#   bash benchmarks/gpu_check.sh
# Installs the working tree into a venv that sees the machine's preinstalled torch (no torch download): the
# benchmark's dependencies from PyPI, or offline from wheels carried in .whl/, then `pip install -e .`.
# Runs benchmarks/throughput.py on the GPU (bf16 autocast on both sides; presets tiny, mini, small), then
# `mini` with objective: electra and with architecture: modernbert (the GPU path of each), and writes
# everything it prints to $OUT/gpu_throughput.txt when $OUT is set, else benchmarks/results/.
# Extra arguments go to throughput.py (e.g. --batch-size 256 --rounds 2; the ELECTRA and ModernBERT runs take
# them too, then their own --presets mini --rounds 1 --steps 30).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# 1. the log, the python, dependencies and the working tree (benchmarks/gpu_env.sh)
GPU_LOG_NAME=gpu_throughput source "$ROOT/benchmarks/gpu_env.sh" || exit 1

# 2. the benchmark: bf16 both sides, alternating rounds; data and tokenizer are cached in /tmp/mlm-bench
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
timeout "${GPU_CHECK_TIMEOUT:-450}" "$PY" benchmarks/throughput.py --device cuda --presets tiny,mini,small \
  --rounds 3 "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}

# 3. the other objective and blocks on the GPU path (bf16 autocast, SDPA): ELECTRA, ModernBERT (ELECTRA builds
#    its own BERT-style blocks: the two do not combine)
for opts in '{"objective": "electra"}' '{"architecture": "modernbert"}'; do
  say "== ours with $opts"
  timeout "${GPU_CHECK_STEP_TIMEOUT:-120}" "$PY" benchmarks/throughput.py --device cuda "$@" --presets mini \
    --rounds 1 --steps 30 --ours-options "$opts" 2>&1 | tee -a "$LOG"
  step_rc=${PIPESTATUS[0]}
  [ "$step_rc" -ne 0 ] && rc=$step_rc
done
say "== exit $rc; output in $LOG"
exit "$rc"
