#!/usr/bin/env bash
# Pretrain objectives-study configs on a CUDA GPU; score them afterwards on any machine with
# `benchmarks/objectives.py --stage gpu --score-only --configs ...` (the same fine-tuning as the CPU stages):
#   bash benchmarks/gpu_pretrain.sh --configs mlm-modernbert-tiny+lr3e-3+meanpool+gpu --minutes 5
# Arguments go to objectives.py (--stage gpu --domains imdb --pretrain-only are set). The corpus is read from
# ../shared/data as on the CPU machine; where that is absent, GPU_DATA names a folder laid out like it (e.g.
# carried in .gpu/data), linked in as ../shared/data. Writes gpu_pretrain.txt (the log) and gpu_pretrain.tar
# (each config's final checkpoint and metrics.json, under runs/objectives/gpu/; with $OUT, in parts of 15 MB)
# to $OUT, else benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GPU_LOG_NAME=gpu_pretrain GPU_EXTRA_DEPS="evaluate" source "$ROOT/benchmarks/gpu_env.sh" || exit 1

if [ ! -e ../shared/data ] && [ -n "${GPU_DATA:-}" ]; then
  mkdir -p ../shared && ln -s "$(cd "$GPU_DATA" && pwd)" ../shared/data
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1
timeout "${GPU_PRETRAIN_TIMEOUT:-540}" "$PY" benchmarks/objectives.py --stage gpu --domains imdb --pretrain-only \
  "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
# what scoring needs, not the intermediate checkpoints
mapfile -t keep < <(ls -d runs/objectives/gpu/imdb/*/pretrain/final runs/objectives/gpu/imdb/*/pretrain/metrics.json 2>/dev/null)
if [ "${#keep[@]}" -gt 0 ]; then
  tar -cf "$RESULTS/gpu_pretrain.tar" "${keep[@]}" && say "checkpoints: $RESULTS/gpu_pretrain.tar (${keep[*]})"
  if [ -n "${OUT:-}" ] && [ "$(stat -c %s "$RESULTS/gpu_pretrain.tar")" -gt 15000000 ]; then
    # files come back from $OUT at up to 16 MB each: cat gpu_pretrain.tar.part-* > gpu_pretrain.tar
    split -b 15000000 "$RESULTS/gpu_pretrain.tar" "$RESULTS/gpu_pretrain.tar.part-" && rm "$RESULTS/gpu_pretrain.tar"
  fi
fi
say "== exit $rc; log in $LOG"
exit "$rc"
