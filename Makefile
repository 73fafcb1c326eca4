# disviz — two commands on a fresh machine:  make run   /   make test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
STAMP := $(VENV)/.requirements-installed

.PHONY: run test setup chromium lint bench checkpoints clean-cache

# (Re)install when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# One torch thread per decode: a class's sessions decode in parallel (one thread each), and a
# 64×64 decode gains nothing from more; server options live in .streamlit/config.toml.
run: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m streamlit run app.py --server.port $(PORT)

# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "error: the browser tests need /usr/bin/chromium. Install it with:  sudo apt-get update && sudo apt-get install -y chromium"; \
		exit 1; \
	fi

test: setup chromium
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check disviz pages app.py tests

bench: setup
	$(PY) -m disviz bench data
	$(PY) -m disviz bench train
	$(PY) -m disviz bench metrics
	$(PY) -m disviz bench app

checkpoints: setup
	bash checkpoints/reproduce.sh
