# Two commands on a fresh machine: `make run` trains the default GAN, `make test`
# runs the test suite. Both create (or reuse) the virtual environment .venv.
# `make docs` builds the documentation site (mkdocs.yml) into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast test-properties docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# `make run` trains the `quick` preset (ganforge_core/presets/quick.toml): the best measured recipe
# for the default dataset, mnist-5k, in about 3 minutes on 2 CPU cores; flags in ARGS override it.
RUN_PRESET ?= quick

run: $(STAMP)
	$(BIN)/ganforge run --preset $(RUN_PRESET) $(ARGS)

# pytest, not python -m pytest: the latter puts the repo root on sys.path, where a
# stale ganforge.egg-info from an editable build can shadow the installed entry points.
# The suite runs on one pytest-xdist worker per CPU core (WORKERS=0 runs it in one
# process); loadgroup keeps the tests that share a module's expensive fixture (a trained
# run, the docs site, mypy) on one worker (tests/conftest.py groups them).
WORKERS ?= auto
PARALLEL := -n $(WORKERS) --dist loadgroup

test: $(STAMP)
	$(BIN)/pytest $(PARALLEL) $(ARGS)

test-fast: $(STAMP)
	$(BIN)/pytest $(PARALLEL) -m "not slow" $(ARGS)

# The correctness properties of training (tests marked `properties`: gradient values and
# isolation through the engine, loss directions, penalties), in under two minutes on 2 cores.
test-properties: $(STAMP)
	$(BIN)/pytest -m properties $(ARGS)

# --strict: a broken link or anchor, or a page missing from the nav, fails the build
# (the test suite builds the site the same way, in tests/test_docs_site.py).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info runs site .pytest_cache .hypothesis .mypy_cache
