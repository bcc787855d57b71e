# All set-up lives here: every target creates/updates the virtual environment idempotently.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
WORKDIR ?= workdir/quickstart
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: venv venv-gpu sysdeps quickstart reproduce lint test test-slow bench clean

# Debian packages the code needs: bubblewrap (bwrap), the OS-level code-checker sandbox
# (data_agents/checkers/bwrap.py). Installed when missing and we are root with apt-get; otherwise
# one line says what to install (the sandbox then refuses to run checkers: it fails closed).
sysdeps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else echo "missing Debian package bubblewrap (the checker sandbox): apt-get install bubblewrap"; fi; }

$(STAMP): setup.py
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q --find-links /opt/wheels -e '.[test,tau2]'
	@touch $(STAMP)

# The quickstart needs the package alone (no test-only dependency such as torch).
$(RUN_STAMP): setup.py
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q --find-links /opt/wheels -e .
	@touch $(RUN_STAMP)

venv: sysdeps $(STAMP)

# A CUDA 12 venv for GPU hosts (bench/gpu_check.sh looks for it): jax[cuda12] pinned to the CPU
# venv's jax, so both run the code at one jax version. Build it where there is network.
GPU_VENV ?= .venv-gpu
JAX_VERSION ?= $(shell $(VPY) -c 'import jax; print(jax.__version__)' 2>/dev/null)
venv-gpu:
	@test -n "$(JAX_VERSION)" || { echo "make venv first, or pass JAX_VERSION=..."; exit 1; }
	@test -x $(GPU_VENV)/bin/python || $(PY) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_VENV)/bin/python -m pip install -q -e '.[gpu]' 'jax[cuda12]==$(JAX_VERSION)' \
		'pytest>=8,<9.2' 'pytest-timeout>=2.3'

# The CPU quickstart: JAX_PLATFORMS=cpu skips libtpu's TPU probe (installed for launch/compile.py).
quickstart: sysdeps $(RUN_STAMP)
	JAX_PLATFORMS=cpu $(VPY) launch/train.py --gin_file gin/quickstart.gin --workdir $(WORKDIR)

# The paper's results table in miniature (gin/reproduce.gin; measured table: docs/results.md).
reproduce: sysdeps $(RUN_STAMP)
	JAX_PLATFORMS=cpu $(VPY) launch/train.py --gin_file gin/reproduce.gin --workdir workdir/reproduce

# ruff (configured in pyproject.toml): the lint rules, and the tree as ruff formats it.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: sysdeps $(STAMP)
	$(VPY) -m pytest -q -n 2 --dist loadgroup -m "not slow" --durations=25 tests

test-slow: sysdeps $(STAMP)
	$(VPY) -m pytest -q -m slow tests

bench: $(STAMP)
	$(VPY) bench/model_bench.py

clean:
	rm -rf $(VENV) workdir
