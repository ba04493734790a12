# The two commands: `make run` (the whole stack on this machine) and `make test`.
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test bench lint install clean

run: $(STAMP)
	@$(VPY) scripts/stack.py run

# ARGS passes options to pytest, e.g. `make test ARGS="-k readyz -x"`.
test: $(STAMP)
	@$(VPY) scripts/stack.py test $(ARGS)

# Benchmarks (bench/README.md): Redis as for tests, PostgreSQL at DATABASE_URL (default
# the fathomloom_bench database, created when missing); rewrites docs/benchmarks.md.
bench: $(BENCH_STAMP)
	@$(VPY) scripts/stack.py bench $(ARGS)

$(BENCH_STAMP): $(STAMP)
	$(VPY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 2; }
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
