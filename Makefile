# Two commands users need: `make demo` (the lab's full job) and `make test` (the whole suite,
# in .venv and again, for the KNIME-facing part, in .venv-knime under KNIME 5.5's pins).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Second test environment: the pip route docs/KNIME.md gives KNIME users, exactly
# (requirements-knime-5.5.txt: KNIME 5.5's Python pins + this project's packages at their
# floors; README, "Tested versions"), plus the test tools, without vae_core installed (as a
# KNIME user's environment). KNIME 5.5 runs Python 3.11.
KNIME_PYTHON       ?= python3.11
KNIME_VENV         ?= .venv-knime
KNIME_PY           := $(KNIME_VENV)/bin/python
KNIME_REQUIREMENTS := requirements-knime-5.5.txt
BUILD_FLOOR        := constraints/build-floor.txt
# What runs under the KNIME pins: the KNIME-facing tests, the table contract, the declared
# versions, stored tables round-tripping exactly, and one real `vae-mnist run` (2 epochs).
KNIME_TESTS := $(wildcard tests/test_knime_*.py) tests/test_tables.py tests/test_versions.py \
  tests/test_sweep.py::test_interrupted_configuration_continues_from_its_checkpoint \
  tests/test_cli.py::test_run_writes_every_table_and_figure
# What runs in .venv: everything but the KNIME-facing files (they run in .venv-knime, under the
# pins of KNIME's own Python environment), plus what only .venv can show: a node runs the
# bundled vae_core even where another vae_core is installed, and the Score node gives the
# library's numbers there too.
UNIT_TESTS := $(filter-out $(wildcard tests/test_knime_*.py),$(wildcard tests/test_*.py)) \
  tests/test_knime_workflow_scripts.py::test_nodes_run_the_bundled_vae_core \
  tests/test_knime_workflow_scripts.py::test_the_score_node_runs_the_bundled_vae_core_with_the_librarys_numbers
# MNIST and KNIME's Python side for the tests: $VAE_MNIST_DIR / $VAE_KNIME_SOURCES, else
# ../shared beside the checkout, else fetched and verified (tests/conftest.py, README "Tests").

# Installs: pip puts uv into .venv, then uv installs both environments from one cache, with hard
# links (the second environment costs little disk). uv reads no pip configuration, so
# scripts/uv_env.py hands it the package sources pip is configured with, if any.
UV_VERSION := 0.13.9
UV         := $(VENV)/bin/uv
UV_PIP      = env $(shell $(PYTHON) scripts/uv_env.py) $(UV) pip
TEST_ENV := $(if $(VAE_MNIST_DIR),VAE_MNIST_DIR=$(abspath $(VAE_MNIST_DIR)))

.PHONY: demo test lint unit unit-knime check-workflow workflow bench experiments targets novelty clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(UV_PIP) install --quiet --python $(PY) -e '.[test]'
	touch $@

$(KNIME_VENV)/.installed: pyproject.toml $(KNIME_REQUIREMENTS) $(BUILD_FLOOR) $(VENV)/.installed
	test -x $(KNIME_PY) || $(KNIME_PYTHON) -m venv $(KNIME_VENV)
	@$(KNIME_PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo \
	  "$(KNIME_VENV) must run Python 3.11 like KNIME 5.5: rm -r $(KNIME_VENV); set KNIME_PYTHON" >&2; \
	  exit 1; }
	# the users' route, exactly
	$(UV_PIP) install --quiet --python $(KNIME_PY) -r $(KNIME_REQUIREMENTS)
	# then the test tools, changing none of those pins, and a build of the project with the
	# [build-system] floor (setuptools)
	$(UV_PIP) install --quiet --python $(KNIME_PY) -c $(BUILD_FLOOR) setuptools
	$(UV_PIP) install --quiet --python $(KNIME_PY) --no-build-isolation -c $(KNIME_REQUIREMENTS) \
	  -c $(BUILD_FLOOR) -e '.[test]'
	# then, like a KNIME user's environment (environment.yml), third-party packages only: the
	# workflow tests here run the vae_core bundled in each workflow; pytest imports the checkout
	$(UV_PIP) uninstall --quiet --python $(KNIME_PY) vae-mnist-knime
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/vae-mnist fetch-data
	$(VENV)/bin/vae-mnist run --run-dir runs/demo $(if $(RESUME),--resume,--overwrite)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

unit: $(VENV)/.installed
	$(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) $(UNIT_TESTS)

unit-knime: $(KNIME_VENV)/.installed
	VAE_TEST_ENV=knime-5.5 $(TEST_ENV) $(KNIME_PY) -m pytest -q -p no:cacheprovider \
	  $(PYTEST_ARGS) $(KNIME_TESTS)

check-workflow: $(VENV)/.installed
	$(PY) -m knime_workflow.build --check

workflow: $(VENV)/.installed
	$(PY) -m knime_workflow.build

# One suite after the other: run side by side on 2 cores (one thread each) they took longer.
test: lint check-workflow unit unit-knime

bench: $(VENV)/.installed
	VAE_MNIST_DIR=$${VAE_MNIST_DIR:-$(abspath ../shared/mnist)} $(PY) bench/bench_train.py

clean:
	rm -rf runs .pytest_cache .ruff_cache

# The lab's experiments: latent {2,5,10,20} x beta {0.5,1,2,4}, 30 epochs, claims + HTML report.
experiments: $(VENV)/.installed
	$(VENV)/bin/vae-mnist sweep --out runs/sweep
	$(VENV)/bin/vae-mnist report runs/sweep

# Leave-one-digit-out novelty detection (Score node's scores vs PCA, calibration), resumable;
# tables and pages into docs/results.
novelty: $(VENV)/.installed
	$(VENV)/bin/python bench/novelty.py --out runs/novelty --results docs/results

# Issue 4's targets over 5 seeds: the lab's recipe and the tuned one (batch 32, cosine from 2e-3).
# Written inside the sweep folder of `make experiments`, where `vae-mnist report runs/sweep`
# shows them ("Held-out neg-ELBO over seeds"); rerun that report after `make targets`.
REPEATS_OUT ?= runs/sweep/repeats
targets: $(VENV)/.installed
	$(VENV)/bin/vae-mnist repeat --out $(REPEATS_OUT)/lab --latent-dims 2 20 --seeds 0 1 2 3 4
	$(VENV)/bin/vae-mnist repeat --out $(REPEATS_OUT)/tuned --latent-dims 2 20 --seeds 0 1 2 3 4 \
	  --config configs/tuned.toml
