# Two commands users need: `make demo` (the lab's full job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Tests and CI read MNIST from ../shared/mnist unless VAE_MNIST_DIR says otherwise.
TEST_MNIST_DIR ?= $(abspath ../shared/mnist)

.PHONY: demo test lint unit check-workflow workflow bench experiments targets clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/vae-mnist fetch-data
	$(VENV)/bin/vae-mnist run --run-dir runs/demo $(if $(RESUME),--resume,--overwrite)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

unit: $(VENV)/.installed
	VAE_MNIST_DIR=$${VAE_MNIST_DIR:-$(TEST_MNIST_DIR)} $(PY) -m pytest -q $(PYTEST_ARGS)

check-workflow: $(VENV)/.installed
	$(PY) -m knime_workflow.build --check

workflow: $(VENV)/.installed
	$(PY) -m knime_workflow.build

test: lint check-workflow unit

bench: $(VENV)/.installed
	VAE_MNIST_DIR=$${VAE_MNIST_DIR:-$(TEST_MNIST_DIR)} $(PY) bench/bench_train.py

clean:
	rm -rf runs .pytest_cache .ruff_cache

# The lab's experiments: latent {2,5,10,20} x beta {0.5,1,2,4}, 30 epochs, claims + HTML report.
experiments: $(VENV)/.installed
	$(VENV)/bin/vae-mnist sweep --out runs/sweep
	$(VENV)/bin/vae-mnist report runs/sweep

# Issue 4's targets over 5 seeds: the lab's recipe and the tuned one (batch 32, cosine from 2e-3).
REPEATS_OUT ?= runs/repeats
targets: $(VENV)/.installed
	$(VENV)/bin/vae-mnist repeat --out $(REPEATS_OUT)/lab --latent-dims 2 20 --seeds 0 1 2 3 4
	$(VENV)/bin/vae-mnist repeat --out $(REPEATS_OUT)/tuned --latent-dims 2 20 --seeds 0 1 2 3 4 \
	  --config configs/tuned.toml
