# All set-up lives here: every target creates/updates the virtual environment idempotently.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
WORKDIR ?= workdir/quickstart
STAMP := $(VENV)/.installed

.PHONY: venv quickstart test test-slow bench clean

$(STAMP): setup.py
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q --find-links /opt/wheels -e '.[test,tau2]'
	@touch $(STAMP)

venv: $(STAMP)

# The CPU quickstart: JAX_PLATFORMS=cpu skips libtpu's TPU probe (installed for launch/compile.py).
quickstart: $(STAMP)
	JAX_PLATFORMS=cpu $(VPY) launch/train.py --gin_file gin/quickstart.gin --workdir $(WORKDIR)

test: $(STAMP)
	$(VPY) -m pytest -q -n 2 --dist loadgroup -m "not slow" --durations=25 tests

test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow tests

bench: $(STAMP)
	$(VPY) bench/model_bench.py

clean:
	rm -rf $(VENV) workdir
