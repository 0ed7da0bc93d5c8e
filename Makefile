# Two commands set everything up on a bare Debian machine (as root):
#   make run        install, then run the built-in default job (writes run.nc)
#   make test       install, then run the test suite
#   make validate   install, then run the quick validation suite (spde-tokens validate --quick)
# Everything lives in a project virtual environment ($(VENV)), created from $(PYTHON): Debian's python3 refuses
# `pip install` outside one (PEP 668). The set-up steps leave stamp files and are skipped when nothing changed.
PYTHON ?= python3
VENV ?= .venv
OUT ?= run.nc
PY := $(VENV)/bin/python
# the FFTW headers build shtns; netcdf-bin gives ncdump; venv/dev/gcc build a venv and the C extension; udunits
# for the CF checker of the tests
APT_PACKAGES := libfftw3-dev netcdf-bin python3-venv python3-dev gcc make libudunits2-0

.PHONY: system install run test validate lint typecheck bench

# apt-get runs only when a package is missing (a second `make run` does no network work)
system:
	@if command -v dpkg-query >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "no dpkg: install FFTW3 headers, a C compiler and Python headers yourself"; fi

$(PY): | system
	$(PYTHON) -m venv $(VENV)

# shtns compiles with -march=native: always build it here, never reuse a wheel built elsewhere (--no-cache-dir)
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-cache-dir --no-binary shtns "shtns>=3.6"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: system $(VENV)/.installed

run: install
	$(PY) -m spde_tokens run -o $(OUT) --overwrite

test: install
	$(PY) -m pytest -q

# the quick validation suite; exits non-zero if a row fails
validate: install
	$(PY) -m spde_tokens validate --quick -o validation_out --overwrite

lint: install
	$(PY) -m ruff check spde_tokens tests benchmarks validation

typecheck: install
	$(PY) -m mypy spde_tokens

bench: install
	$(PY) benchmarks/bench_density.py
	$(PY) benchmarks/bench_lagrangian.py
