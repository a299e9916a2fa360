# The two commands a newcomer needs (README.md): `make demo` and `make test`.
# Each installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo toy test bench bench-envs

install:
	scripts/install.sh dev

# The main command: sim demos -> pretraining -> target demos over ROS 2 -> finetuning ->
# deployment over ROS 2 -> report (scripts/demo.py; ARGS="task=pick_cube ..." passes overrides).
demo:
	scripts/install.sh maniskill,mujoco,ros,data
	$(PY) scripts/demo.py $(ARGS)

# The latent-planning toy (no simulator): seconds on a CPU.
toy: install
	$(PY) scripts/toy_latent.py

# The tests exercise both simulators, the ROS 2 bridge, the demo-log readers and a sweep on a
# local Ray head, so they install those extras. `lint-imports` checks the layer contracts in
# pyproject.toml (which package may import which) before the tests run.
test:
	scripts/install.sh dev,maniskill,mujoco,ros,data,cluster
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) benchmarks/planner.py

bench-envs:
	scripts/install.sh dev,maniskill,mujoco
	$(PY) benchmarks/env_throughput.py
