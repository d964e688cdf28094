# Two commands on a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install everything into it: the package with its train (torch,
# tokenizers), ray and test extras. `pip install scalinglab` alone fits, plans and reports.
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
	$(BIN)/python -m pip install --quiet -e '.[train,ray,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scalinglab demo

browser:
	sh scripts/ensure-chromium.sh

# The layer contract (pyproject.toml, [tool.importlinter]), then every test, the slow ones
# included: 7 min + 9.5 min on the shared 2-core Zen 3 under load (2026-11-30; see README,
# Development); CI's budget is 90 minutes. `.venv/bin/pytest` alone runs the default suite
# without the slow tests.
test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m 'slow or not slow'

# ruff, and the layer contract: a lower layer never imports a higher one.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
