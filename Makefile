# Two entry points a new user needs: `make run` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench chaos clean

run: $(VENV)/.installed
	$(BIN)/bik-bridge serve $(if $(CONFIG),--config $(CONFIG))

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# BENCH_ARGS=--burst runs the flash-sale burst (bench/burst.py) instead of the throughput benchmark.
bench: $(VENV)/.installed-test
	$(BIN)/python -m $(if $(filter --burst,$(BENCH_ARGS)),bench.burst,bench) $(filter-out --burst,$(BENCH_ARGS))

# Two bridges, one Redis, a faulty fake store, seeded: CHAOS_ARGS='--seed N --platform bitbybit --short';
# CHAOS_ARGS='--profile overflow' runs the bridge on `placement: overflow` against a small quota.
chaos: $(VENV)/.installed-test
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
