# Two entry points (see README): `make demo` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch; installed before the package so pip never picks a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow lint typecheck clean

# pip shows what it fetches: the first install takes a few minutes, and silence looks like a hang.
$(STAMP): pyproject.toml
	@echo "== installing $(TORCH_SPEC) (CPU build), then WorldFlux and its dependencies into $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e ".[dev]"
	touch $(STAMP)
	@echo "== installed into $(VENV)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/worldflux demo

lint: $(STAMP)
	$(BIN)/ruff check worldflux tests benchmarks
	$(BIN)/ruff format --check worldflux tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
