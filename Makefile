# `make demo` and `make test` set up everything they need in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch for optuna's GP engine: pin the CPU build, which this machine keeps on disk. A looser
# requirement (or a bare `torch` pulled in by the `gp` extra) would fetch a multi-GB CUDA build.
TORCH  := torch==2.13.0
EXTRAS := dev,gp,cmaes,sagemaker,ui-test,notebook,docs,examples
BENCH_STAMP := $(VENV)/.installed-bench
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

CHROMIUM := /usr/bin/chromium
POSTGRES := /usr/lib/postgresql

.PHONY: demo test lint typecheck check bench clean docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tuner run examples/quickstart/study.yaml --overwrite

# The MLflow UI test drives Debian's Chromium (Playwright's own browser download is not used).
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# The study-lock tests start a throwaway PostgreSQL server from Debian's package.
$(POSTGRES):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql

test: $(STAMP) $(CHROMIUM) $(POSTGRES)
	$(BIN)/python -m pytest

# The peers (Ray Tune, optuna-integration) are only needed here, not for the tests.
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -e '.[$(EXTRAS),bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

# The documentation site, into site/; --strict fails on a broken link, anchor or API reference.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) tuner-studies mlflow.db .pytest_cache .mypy_cache .ruff_cache .hypothesis
