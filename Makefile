# Developer and CI entry points. POSIX make; everything runs from the repo's own .venv.
#
#   make venv    create .venv and install the project editable with dev extras (when needed)
#   make test    make sure PostgreSQL and Redis are up on loopback, then run the whole suite
#   make lint    ruff format --check, ruff check, mypy (strict on schemas producers worker; etims_relay too, not strict)
#   make demo    run the end-to-end demo (embedded SQLite + embedded redis-server)
#   make bench   run every bench/*.py with its defaults
#   make till-wheel  build the till client's own distribution (packaging/till) into dist/till

PYTHON = python3
VENV = .venv
BIN = $(VENV)/bin
# Touched after a successful install; redone when pyproject.toml changes.
STAMP = $(VENV)/.installed

.PHONY: venv test lint demo bench till-wheel

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: venv
	bash scripts/ensure-services.sh
	bash scripts/ensure-tools.sh
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy schemas producers worker etims_relay

demo: venv
	$(BIN)/etims-relay demo

bench: venv
	for script in bench/*.py; do $(BIN)/python "$$script" || exit 1; done

till-wheel: venv
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist/till ./packaging/till
