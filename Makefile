# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlm-installed
TEST_STAMP := $(VENV)/.mlm-test-installed
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
	$(PY) -m pip install -e .
	@touch $(STAMP)

# the test tools (pytest, pytest-xdist, ruff, ...) on top of the package: only `make test` and `make lint` need them
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -e ".[test]"
	@touch $(TEST_STAMP)

demo: install
	$(OFFLINE) $(VENV)/bin/mlm run recipes/demo.yaml

# both cores: the test files are spread over one worker per core
test: $(TEST_STAMP)
	$(OFFLINE) $(PY) -m pytest -q -n auto --dist loadfile

test-fast: $(TEST_STAMP)
	$(OFFLINE) $(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check mlm data_prep tests benchmarks
	$(VENV)/bin/ruff format --check mlm data_prep tests benchmarks

format: $(TEST_STAMP)
	$(VENV)/bin/ruff format mlm data_prep tests benchmarks
	$(VENV)/bin/ruff check --fix mlm data_prep tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
