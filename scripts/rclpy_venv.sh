#!/usr/bin/env bash
# Build the virtual environment that holds real rclpy (ROS 2 Kilted wheels from PyPI) for the
# interop tests. The wheels install a bootstrapper .pth that re-executes every Python start in
# that environment to set LD_LIBRARY_PATH, so they live here and never in the project's .venv.
#
# Usage: scripts/rclpy_venv.sh [VENV_DIR]   (default: .cache/rclpy-venv under the repo root)
# Base interpreter: $PYTHON (default python3.11; the wheels are cp311 only).
# Prints the venv's python on success. A finished venv carries a stamp file and is reused.
# Exit status 3: the venv could not be made or pip could not install the wheels (no index,
# no cp311 build for this platform); the interop tests skip on that, fail on anything else.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-$repo_root/.cache/rclpy-venv}"
stamp="$venv_dir/.sim2real-rclpy-ok"
base_python="${PYTHON:-python3.11}"

# Pinned so golden payloads and graph behaviour stay the same from run to run. test-msgs
# brings an action type (Fibonacci) to test the action client, since control_msgs is not on PyPI.
packages=(
  "ros-rclpy[fastrtps]==9.1.2"
  "ros-sensor-msgs==5.5.1"
  "ros-std-msgs==5.5.1"
  "ros-trajectory-msgs==5.5.1"
  "ros-diagnostic-msgs==5.5.1"
  "ros-geometry-msgs==5.5.1"
  "ros-test-msgs==2.3.0"
  "rosbags==0.11.9"
)

mkdir -p "$(dirname "$venv_dir")"
# Parallel test runs share the cache: one builds, the others wait and reuse it.
exec 9>"$venv_dir.lock"
flock 9

# The stamp holds the package list: a venv built from another list is rebuilt.
if [[ -f "$stamp" && -x "$venv_dir/bin/python" && "$(cat "$stamp")" == "${packages[*]}" ]]; then
  echo "$venv_dir/bin/python"
  exit 0
fi

rm -rf "$venv_dir"
"$base_python" -m venv "$venv_dir" >&2 || exit 3
if ! "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2; then
  rm -rf "$venv_dir"
  exit 3
fi
# Importing proves the wheels and their native libraries load, not just that pip finished.
"$venv_dir/bin/python" -c "import rclpy, rclpy.serialization, rclpy.action, sensor_msgs.msg, std_msgs.msg, trajectory_msgs.msg, geometry_msgs.msg, diagnostic_msgs.msg, test_msgs.action, rosbags" >&2
echo "${packages[*]}" > "$stamp"
echo "$venv_dir/bin/python"
