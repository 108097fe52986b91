# The two set-up commands (see README): `make demo` and `make test`. Both create .venv on first use and install
# through constraints.txt, which pins the CPU build of torch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINTED := src tests benchmarks examples scripts

.PHONY: demo test test-all format docs bench-avdigits bench-compare bench-deploy clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/polymodal demo --out polymodal-demo

# System programs some tests need (espeak-ng, chromium): installed here when missing and possible (root + apt-get),
# never from pytest; where they cannot be had, the script says why and those tests skip.
# Static checks first (settings in pyproject.toml): ruff lint + format check and mypy on src/; the import contract
# runs inside pytest (tests/test_architecture.py).
test: $(STAMP)
	bash scripts/install_system_deps.sh
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(PY) -m pytest

# Slow end-to-end tests and benchmarks too (minutes to an hour on 2 CPU cores).
test-all: $(STAMP)
	bash scripts/install_system_deps.sh
	$(PY) -m pytest -m "slow or not slow"

# Rewrite the code into the shape `make test` checks (ruff's import order, safe fixes and formatting).
format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# The docs site (MkDocs Material + mkdocstrings API reference from the docstrings) into site/; strict: any warning
# fails. Preview with `$(VENV)/bin/mkdocs serve`.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench-avdigits: $(STAMP)
	$(PY) benchmarks/avdigits_concat.py

# Every fusion method and each single modality, 3 seeds, missing-modality training, robustness (~5 hours on 2 idle
# cores; stop it at any time: rerunning goes on from the finished runs).
bench-compare: $(STAMP)
	$(PY) benchmarks/avdigits_compare.py

# ONNX/int8/pruning figures, then the server load test (docs/DEPLOYMENT.md); ~15 minutes on 2 idle cores.
bench-deploy: $(STAMP)
	$(PY) benchmarks/deploy_onnx.py
	$(PY) benchmarks/serve_load.py

clean:
	rm -rf $(VENV) polymodal-demo .pytest_cache site
