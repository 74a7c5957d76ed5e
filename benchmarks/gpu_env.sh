# Sourced by the GPU scripts (gpu_check.sh, gpu_pretrain.sh) from the repository root, after they set ROOT and
# GPU_LOG_NAME. Starts the log ($OUT/GPU_LOG_NAME.txt, else benchmarks/results/; `say` echoes into it) with the
# machine's GPU and torch; then a python that sees the machine's preinstalled CUDA torch, the dependencies (PyPI,
# or offline from wheels in .whl/; GPU_EXTRA_DEPS: more names, each both a pip and an import name) and the
# working tree installed. PYTHON names the machine's python (default python3). Sets RESULTS, LOG and PY;
# returns 1 if they do not import. GPU_ENV_QUICK=1 (gpu_check.sh --quick): PY is PYTHON as it is, nothing installed.
RESULTS="${OUT:-$ROOT/benchmarks/results}"
mkdir -p "$RESULTS"
LOG="$RESULTS/$GPU_LOG_NAME.txt"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

PY_SYS=${PYTHON:-python3}
say "== $(date -u +%FT%TZ) $(basename "$0" .sh) on $(hostname)"
if [ "${GPU_ENV_QUICK:-0}" = 1 ]; then  # gpu_check.sh --quick: a CPU smoke run with PYTHON as it is, nothing installed
  PY="$PY_SYS"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import torch, transformers, mlm; print('quick: torch', torch.__version__, 'transformers', transformers.__version__, 'mlm', mlm.__file__)" 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
"$PY_SYS" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

# a venv on top of the system site-packages (keeps the preinstalled CUDA torch)
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
DEPS=(${GPU_EXTRA_DEPS:-} "transformers>=5.0" "datasets>=3.0" "tokenizers>=0.21" "accelerate>=1.0" "safetensors>=0.4" "huggingface_hub>=1.0" "pyyaml>=6")
PROBE="import transformers, datasets, tokenizers, accelerate, safetensors, huggingface_hub, yaml
assert int(transformers.__version__.split('.')[0]) >= 5, transformers.__version__"
for extra in ${GPU_EXTRA_DEPS:-}; do PROBE+=$'\n'"import $extra"; done
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
  return 1
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"

