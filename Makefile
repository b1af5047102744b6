# Developer and CI entry points. POSIX make; everything runs from the repo's own .venv.
#
#   make venv    create .venv: the pinned, hash-checked requirements-dev.lock, then the project
#                editable (when needed)
#   make lock    re-resolve requirements.lock (runtime, the image) and requirements-dev.lock
#                (runtime + dev) from pyproject.toml, with hashes (uv pip compile)
#   make min-versions  the unit tests with every runtime dependency at its declared minimum
#   make test    make sure PostgreSQL and Redis are up on loopback, then run the whole suite
#   make lint    ruff format --check, ruff check, mypy (strict on schemas producers worker simulator; etims_relay too, not strict)
#   make demo    run the end-to-end demo (embedded SQLite + embedded redis-server)
#   make bench   run every bench/*.py with its defaults
#   make till-wheel  build the till client's own distribution (packaging/till) into dist/till

PYTHON = python3
VENV = .venv
BIN = $(VENV)/bin
# Touched after a successful install; redone when pyproject.toml or the lock changes.
STAMP = $(VENV)/.installed
LOCK = requirements.lock
DEV_LOCK = requirements-dev.lock
# The resolution: Python 3.11 (the image's and CI's), markers for other platforms kept.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11

.PHONY: venv test lint demo bench till-wheel lock min-versions

venv: $(STAMP)

# Every dependency from the lock, hash-checked; then the project itself, without touching them
# (setuptools, its build backend, is in the lock too, hence --no-build-isolation).
$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# After changing dependencies in pyproject.toml. The runtime lock is constrained by the dev
# one, so the image and the test venv run the same versions.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q 'uv>=0.4'
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK) pyproject.toml
	$(UV_COMPILE) -c $(DEV_LOCK) -o $(LOCK) pyproject.toml

min-versions: venv
	$(BIN)/python scripts/check_min_versions.py

test: venv
	bash scripts/ensure-services.sh
	bash scripts/ensure-tools.sh
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy schemas producers worker simulator etims_relay

demo: venv
	$(BIN)/etims-relay demo

bench: venv
	for script in bench/*.py; do $(BIN)/python "$$script" || exit 1; done

till-wheel: venv
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist/till ./packaging/till
