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
RESULTS="${OUT:-$ROOT/benchmarks/results}"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_throughput.txt"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

PY_SYS=${PYTHON:-python3}
say "== $(date -u +%FT%TZ) gpu_check on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
"$PY_SYS" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

# 1. a venv on top of the system site-packages (keeps the preinstalled CUDA torch)
in_venv() { "$1" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; }
VENV="${GPU_CHECK_VENV:-/tmp/mlm-gpu-venv}"
if in_venv "$PY_SYS"; then
  VENV=""  # the machine's python is itself a venv: one on top would see the base python's packages, not its torch
elif [ ! -x "$VENV/bin/python" ]; then
  "$PY_SYS" -m venv --system-site-packages "$VENV" >>"$LOG" 2>&1 || VENV=""
fi
PY="${VENV:+$VENV/bin/python}"
PY="${PY:-$PY_SYS}"
PIP_OPTS=(--disable-pip-version-check -q)
in_venv "$PY" || PIP_OPTS+=(--user)  # no venv: user site
# what the benchmark imports (not the project's scikit-learn/matplotlib/evaluate); torch is the machine's
DEPS=("transformers>=5.0" "datasets>=3.0" "tokenizers>=0.21" "accelerate>=1.0" "safetensors>=0.4" "huggingface_hub>=1.0" "pyyaml>=6")
PROBE="import transformers, datasets, tokenizers, accelerate, safetensors, huggingface_hub, yaml
assert int(transformers.__version__.split('.')[0]) >= 5, transformers.__version__"
if ! "$PY" -c "$PROBE" >/dev/null 2>&1; then
  if [ -d "$ROOT/.whl" ]; then  # offline: wheels carried in .whl/, e.g. made beforehand on a machine with internet by
    # pip download -d .whl --only-binary=:all: --python-version 3.X --platform manylinux2014_x86_64 <the DEPS above>
    "$PY" -m pip install "${PIP_OPTS[@]}" --no-index --find-links "$ROOT/.whl" "${DEPS[@]}" >>"$LOG" 2>&1 \
      || say "warning: offline install from .whl/ failed (see above)"
  else
    "$PY" -m pip install "${PIP_OPTS[@]}" "${DEPS[@]}" >>"$LOG" 2>&1 \
      || say "warning: pip install of the dependencies failed (no internet and no .whl/?)"
  fi
fi
# the working tree itself: editable, no dependency resolution, no build isolation (works offline)
"$PY" -m pip install "${PIP_OPTS[@]}" --no-deps --no-build-isolation -e "$ROOT" >>"$LOG" 2>&1 \
  || say "note: pip install -e . failed; using the tree through PYTHONPATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch, transformers, datasets, tokenizers, accelerate, mlm, data_prep" >>"$LOG" 2>&1; then
  say "error: the package or its dependencies do not import; carry wheels in .whl/ (see above)"
  exit 1
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"

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
