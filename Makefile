# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned to the CPU build on this disk, so no other package pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/codecsep demo

test: $(STAMP)
	$(BIN)/python -m pytest -x --timeout=600

clean-venv:
	rm -rf $(VENV)
