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
# ManiSkill3 on CPU renders with Mesa's lavapipe Vulkan driver, and SAPIEN refuses
# Mesa < 25: Debian bookworm ships 22, bookworm-backports ships 25.
if [[ ",${extras}," == *",maniskill,"* ]] && ! dpkg --compare-versions \
        "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo 0)" ge 25; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: the maniskill extra needs mesa-vulkan-drivers >= 25 (apt, as root)" >&2
        exit 1
    fi
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" = bookworm ]; then
        # Backports from the same Debian mirror this machine already uses.
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        if [ -z "$mirror" ]; then
            echo "install.sh: no Debian mirror found in /etc/apt to add bookworm-backports from" >&2
            exit 1
        fi
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" > /etc/apt/sources.list.d/bookworm-backports.sources
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
    else
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
    fi
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "install.sh: creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
# constraints.txt pins torch==2.13.0: any other torch resolution pulls CUDA wheels.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[${extras}]"
echo "install.sh: sim2real[${extras}] ready in $venv"
