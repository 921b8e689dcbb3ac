# Two entry points for a fresh machine:  make demo  |  make test
# Both create .venv when missing and install the project into it once; a second run
# re-installs nothing (the stamp file is newer than pyproject.toml).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is held by constraints.txt; override with CONSTRAINTS= to take any torch.
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

# The Lava environment (lava-nc 0.10.0 needs Python 3.10 and numpy < 2); see docs/DESIGN.md.
LAVA_VENV ?= .venv-lava
LAVA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) python3.10)
LAVA_STAMP := $(LAVA_VENV)/.installed

.PHONY: demo test install clean lava-env

demo: $(STAMP) lava-env
	$(BIN)/snn demo --out $(DEMO_OUT)

# The layering rules (import-linter contracts in pyproject.toml), the lint, then the suite on
# every core (pytest-xdist).
test: $(STAMP) lava-env
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_C) -e ".[dev]"
	touch $(STAMP)

lava-env: $(LAVA_STAMP)

$(LAVA_STAMP): hardware/lava/requirements.txt
	test -x $(LAVA_VENV)/bin/python || $(LAVA_PYTHON) -m venv $(LAVA_VENV)
	$(LAVA_VENV)/bin/python -m pip install -q --upgrade pip
	$(LAVA_VENV)/bin/python -m pip install -q -r hardware/lava/requirements.txt
	$(if $(wildcard hardware/lava/requirements-nodeps.txt),$(LAVA_VENV)/bin/python -m pip install -q --no-deps -r hardware/lava/requirements-nodeps.txt,)
	touch $(LAVA_STAMP)

clean:
	rm -rf $(VENV) $(LAVA_VENV) $(DEMO_OUT) .pytest_cache
