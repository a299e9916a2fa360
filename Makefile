# The two commands a newcomer needs (README.md): `make demo` and `make test`.
# Each installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench

install:
	scripts/install.sh dev

demo: install
	$(PY) scripts/toy_latent.py

test: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) benchmarks/planner.py
