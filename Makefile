PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Today's kittycad beside the contract's 1.2.0 (one venv cannot hold both): the end-to-end tests
# also read with it, in a subprocess with PYTHONPATH=$(LATEST_SDK). Pinned, so that a new release
# cannot turn main red overnight: to move it, change KITTYCAD_LATEST and run `make test`.
KITTYCAD_LATEST := 1.8.0
TRUSTSTORE := 0.10.5
LATEST_SDK := $(VENV)/kittycad-latest
LATEST_STAMP := $(LATEST_SDK)/.installed-$(KITTYCAD_LATEST)

.PHONY: serve test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# kittycad >= 1.8 imports truststore, which 1.2.0 does not; its other dependencies are in the venv.
$(LATEST_STAMP): $(STAMP)
	rm -rf $(LATEST_SDK)
	$(BIN)/pip install --quiet --no-deps --target $(LATEST_SDK) \
		kittycad==$(KITTYCAD_LATEST) truststore==$(TRUSTSTORE)
	touch $(LATEST_STAMP)

serve: $(STAMP)
	$(BIN)/zoopay db upgrade
	$(BIN)/zoopay serve

test: $(STAMP) $(LATEST_STAMP) lint
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	ZOOPAY_TEST_DATABASE=sqlite $(BIN)/pytest
	ZOOPAY_TEST_DATABASE=postgresql $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) zoopay.db

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v pgbench >/dev/null || (apt-get update -qq && apt-get install -y -qq postgresql-contrib)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/billing.py $(BILLING_BENCH_ARGS)
