# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlm-installed
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-fast lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing the default (CUDA) torch build"; \
		$(PY) -m pip install $(TORCH_PIP_ARGS) "torch>=2.2"; \
	else \
		echo "no GPU: installing the CPU build torch==2.13.0 first"; \
		$(PY) -m pip install $(TORCH_PIP_ARGS) torch==2.13.0; \
	fi
	$(PY) -m pip install -e ".[test]"
	@touch $(STAMP)

demo: install
	$(OFFLINE) $(VENV)/bin/mlm run recipes/demo.yaml

test: install
	$(OFFLINE) $(PY) -m pytest -q

test-fast: install
	$(OFFLINE) $(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check mlm data_prep tests benchmarks
	$(VENV)/bin/ruff format --check mlm data_prep tests benchmarks

format: install
	$(VENV)/bin/ruff format mlm data_prep tests benchmarks
	$(VENV)/bin/ruff check --fix mlm data_prep tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
