# Two commands on a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install everything the project needs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install lint browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned CPU build lies on these machines' disk; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scalinglab demo

browser:
	sh scripts/ensure-chromium.sh

# Every test, the slow ones included: 2 min 38 s + 6 min 6 s on an idle 2-core Zen 3 (2026-11-28);
# CI's budget is 90 minutes. `.venv/bin/pytest` alone runs the default suite without them.
test: $(STAMP) browser
	$(BIN)/python -m pytest -m 'slow or not slow'

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
