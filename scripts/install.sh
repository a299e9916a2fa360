#!/usr/bin/env bash
# Installs sim2real into a project virtual environment (.venv by default).
#   scripts/install.sh [EXTRAS]     e.g. scripts/install.sh dev  or  scripts/install.sh dev,mujoco
# Idempotent: a second run only checks that everything is satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-dev}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "install.sh: sim2real needs Python >= 3.10, found $("$python" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "install.sh: creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
# constraints.txt pins torch==2.13.0: any other torch resolution pulls CUDA wheels.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[${extras}]"
echo "install.sh: sim2real[${extras}] ready in $venv"
