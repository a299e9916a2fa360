"""Starting bridge nodes as child processes, never on the real network by accident: the
loopback-only network namespace every DDS-starting entry point enters first, the interpreter
that runs rclpy nodes, and a node process with its logs and final status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robot_bridge.netns import in_network_namespace, loopback_env, netns_command
from robot_bridge.transport import rclpy_available

REPO = Path(__file__).resolve().parents[1]
_TERM_GRACE_S = 5.0


def ensure_network_namespace(argv: Sequence[str], allow_network: bool, domain_id: int) -> None:
    """Make sure DDS cannot leave the machine before any node starts.

    Inside a loopback-only namespace already: add the loopback-only settings to the environment.
    Otherwise re-execute `argv` under `netns_command` (this call does not return). With
    `allow_network` nothing changes: the deployment talks to the real network on purpose.
    """
    if allow_network:
        return
    env = loopback_env(domain_id)
    if in_network_namespace():
        os.environ.update(env)
        return
    command = netns_command(list(argv))
    os.execvpe(command[0], command, {**os.environ, **env})


def require_network_namespace(allow_network: bool, what: str) -> None:
    """Refuse to start DDS nodes outside a loopback-only namespace unless the network is allowed."""
    if not allow_network and not in_network_namespace():
        raise RuntimeError(f"{what}: not in a loopback-only network namespace; call ensure_network_namespace() "
                           f"first (or set allow_network=true to use the real network on purpose)")


def find_rclpy_python(explicit: str = "") -> str:
    """The interpreter that runs rclpy nodes: `explicit`, this one when rclpy imports, or the cached venv."""
    if explicit:
        return explicit
    if rclpy_available():
        return sys.executable
    venv = Path(os.environ.get("SIM2REAL_RCLPY_VENV", REPO / ".cache" / "rclpy-venv"))
    python = venv / "bin" / "python"
    if (venv / ".sim2real-rclpy-ok").exists() and python.exists():
        return str(python)
    raise RuntimeError(f"transport=rclpy: rclpy is not importable here and there is no rclpy venv at {venv}; "
                       f"build it with `bash scripts/rclpy_venv.sh` or pass rclpy_python=...")


def node_command(module: str, python: str, args: Sequence[str]) -> list[str]:
    """argv that runs `python -m module args`; a foreign interpreter (the rclpy venv) gets this
    environment's site-packages appended to its path, for torch and MuJoCo."""
    # Not resolved: venvs link to the same base interpreter, and it is the venv that matters.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return [python, "-m", module, *args]
    site = sysconfig.get_paths()["purelib"]
    boot = (f"import site, runpy; site.addsitedir({site!r}); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [python, "-c", boot, *args]


class NodeProcess:
    """A node in a child process, its output in `log_dir/<name>.out|.err`."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def final_status(self) -> dict[str, Any] | None:
        """The JSON status the node printed last, if any."""
        for line in reversed(self.out_path.read_text().strip().splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        return None

    def describe(self) -> str:
        return (f"{self.name} (rc={self.popen.poll()}), last stderr:\n"
                + "\n".join(self.err_path.read_text().splitlines()[-15:]))
