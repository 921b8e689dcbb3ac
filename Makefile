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

.PHONY: demo test install clean

demo: $(STAMP)
	$(BIN)/snn demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_C) -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
