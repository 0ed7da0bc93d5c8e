# Two commands set everything up on a bare machine (Debian, root):
#   make run    install, then run the built-in default job (writes run.nc)
#   make test   install, then run the test suite
#   make validate   install, then run the quick validation suite (spde-tokens validate --quick)
PYTHON ?= python3
OUT ?= run.nc

.PHONY: system install run test validate lint bench

system:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfftw3-dev netcdf-bin >/dev/null

# shtns compiles with -march=native: always build it here, never reuse a wheel built elsewhere
install: system
	$(PYTHON) -m pip install -q --no-cache-dir --no-binary shtns "shtns>=3.6"
	$(PYTHON) -m pip install -q -e ".[test]"

run: install
	$(PYTHON) -m spde_tokens.cli run -o $(OUT)

test: install
	$(PYTHON) -m pytest -q

# the quick validation suite of DESIGN 5 (about 5 minutes on 2 cores); exits non-zero if a row fails
validate: install
	$(PYTHON) -m spde_tokens.cli validate --quick -o validation_out

lint:
	ruff check spde_tokens tests benchmarks validation

bench:
	$(PYTHON) benchmarks/bench_density.py
