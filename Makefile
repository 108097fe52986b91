# The two set-up commands (see README): `make demo` and `make test`. Both create .venv on first use and install
# through constraints.txt, which pins the CPU build of torch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench-avdigits bench-deploy clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/polymodal demo --out polymodal-demo

test: $(STAMP)
	$(PY) -m pytest

# Slow end-to-end tests and benchmarks too (minutes to an hour on 2 CPU cores).
test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

bench-avdigits: $(STAMP)
	$(PY) benchmarks/avdigits_concat.py

# ONNX/int8/pruning figures, then the server load test (docs/DEPLOYMENT.md); ~15 minutes on 2 idle cores.
bench-deploy: $(STAMP)
	$(PY) benchmarks/deploy_onnx.py
	$(PY) benchmarks/serve_load.py

clean:
	rm -rf $(VENV) polymodal-demo .pytest_cache
