#!/usr/bin/env bash
# Build the virtual environment that holds colcon (the ROS 2 build tool, from PyPI) for the
# packaging test, which runs `colcon build` on robot_bridge/ros2_pkg. colcon lives here and not
# in the project's .venv: it pulls in its own plugins and setuptools pin, and only one test uses it.
#
# Usage: scripts/colcon_venv.sh [VENV_DIR]   (default: .cache/colcon-venv under the repo root)
# Base interpreter: $PYTHON (default python3).
# Prints the venv's python on success. A finished venv carries a stamp file and is reused.
# Exit status 3: the venv could not be made or pip could not install colcon (no package index);
# the packaging test skips on that, fails on anything else.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-$repo_root/.cache/colcon-venv}"
stamp="$venv_dir/.sim2real-colcon-ok"
base_python="${PYTHON:-python3}"

# Pinned so the build behaves the same from run to run. setuptools stays below 70, the range
# ROS 2 Jazzy ships (Ubuntu 24.04: 68.1), where `setup.py`-driven builds are still supported.
packages=(
  "colcon-core==0.21.3"
  "colcon-ros==0.5.0"
  "colcon-python-setup-py==0.2.9"
  "colcon-recursive-crawl==0.2.3"
  "catkin-pkg==1.1.1"
  "setuptools==69.5.1"
)

mkdir -p "$(dirname "$venv_dir")"
# Parallel test runs share the cache: one builds, the others wait and reuse it.
exec 9>"$venv_dir.lock"
flock 9

if [[ -f "$stamp" && -x "$venv_dir/bin/colcon" ]]; then
  echo "$venv_dir/bin/python"
  exit 0
fi

rm -rf "$venv_dir"
"$base_python" -m venv "$venv_dir" >&2 || exit 3
if ! "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2; then
  rm -rf "$venv_dir"
  exit 3
fi
# colcon must list the ament_python build type (from colcon-ros), not just be installed.
"$venv_dir/bin/colcon" build --help >/dev/null
"$venv_dir/bin/python" -c "import colcon_ros.task.ament_python, catkin_pkg.package" >&2
touch "$stamp"
echo "$venv_dir/bin/python"
