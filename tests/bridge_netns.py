"""Run Python snippets in a fresh network namespace with loopback-only DDS settings.

Tests never start a DDS participant in the pytest process. They describe one or more
processes (`Proc`: a Python snippet and the interpreter to run it with) and `run_in_netns`
starts this file as a driver inside `unshare -n` (`robot_bridge.netns.netns_command`). The
driver checks that its namespace has only `lo`, starts the processes side by side (they share
the namespace, so they discover each other and nothing else), waits for the foreground ones,
stops the background ones, and prints one JSON report.

Every process gets `robot_bridge.netns.loopback_env(domain_id)` and `PYTHONPATH` = repo root.
A snippet reports by printing JSON as its last stdout line (`ProcResult.json()`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # when run as the driver script
    sys.path.insert(0, str(REPO))

from robot_bridge.netns import in_network_namespace, loopback_env, netns_command  # noqa: E402

# A background process that ignores SIGTERM gets this long before SIGKILL.
_TERM_GRACE_S = 2.0


@dataclass
class Proc:
    """One process to start in the namespace.

    Attributes:
        name: key in the result dict.
        code: Python source run with `python -c`.
        python: interpreter (default: the one running pytest).
        background: stopped with SIGTERM once every foreground process has exited.
    """

    name: str
    code: str
    python: str = sys.executable
    background: bool = False


@dataclass
class ProcResult:
    """What one process did: exit status (None: killed at the deadline) and its output."""

    name: str
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False

    def json(self) -> Any:
        """The last stdout line parsed as JSON; raises with the process output otherwise."""
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
        raise AssertionError(f"{self.name}: no JSON on the last stdout line\n{self.describe()}")

    def describe(self) -> str:
        return (
            f"--- {self.name}: rc={self.returncode} timed_out={self.timed_out}\n"
            f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
        )

    def check(self) -> ProcResult:
        """Raise with the full output unless the process exited 0."""
        if self.returncode != 0:
            raise AssertionError(self.describe())
        return self


def run_in_netns(
    procs: list[Proc] | Proc,
    *,
    domain_id: int,
    timeout_s: float = 20.0,
    env: dict[str, str] | None = None,
) -> dict[str, ProcResult]:
    """Run `procs` together in a new network namespace; returns results by name.

    Args:
        procs: the processes (foreground ones decide when the run ends).
        domain_id: ROS_DOMAIN_ID for all of them (unique per test).
        timeout_s: deadline for the foreground processes; everything is killed after it.
        env: extra environment variables (override the loopback settings only on purpose).
    """
    procs = [procs] if isinstance(procs, Proc) else procs
    names = [p.name for p in procs]
    if len(set(names)) != len(names):
        raise ValueError(f"run_in_netns: duplicate process names {names}")
    child_env = dict(os.environ)
    child_env.update(loopback_env(domain_id))
    child_env["PYTHONPATH"] = str(REPO)
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="bridge-netns-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"timeout_s": timeout_s, "procs": [asdict(p) for p in procs]}))
        cmd = netns_command([sys.executable, str(Path(__file__).resolve()), str(spec)])
        # A session of its own, so a hung driver and its children can be killed as one group.
        driver = subprocess.Popen(
            cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = driver.communicate(timeout=timeout_s + _TERM_GRACE_S + 10)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            out, err = driver.communicate()
            raise AssertionError(f"netns driver hung past its deadline\nstdout:\n{out}\nstderr:\n{err}") from None
    if driver.returncode != 0:
        raise AssertionError(f"netns driver failed (rc={driver.returncode})\nstdout:\n{out}\nstderr:\n{err}")
    report = json.loads(out.strip().splitlines()[-1])
    return {r["name"]: ProcResult(**r) for r in report}


def _wait_all(running: list[tuple[dict, subprocess.Popen, Any, Any]], deadline: float) -> set[str]:
    """Wait for the foreground processes (killing them at the deadline), then stop the rest."""
    timed_out: set[str] = set()
    for proc, popen, _, _ in running:
        if proc["background"]:
            continue
        try:
            popen.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
            timed_out.add(proc["name"])
    for proc, popen, _, _ in running:
        if proc["background"] and popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
    return timed_out


def _drive(spec_path: str) -> None:
    """Driver side (inside the namespace): start, wait, stop, report."""
    spec = json.loads(Path(spec_path).read_text())
    if not in_network_namespace():
        raise SystemExit("bridge_netns driver: refusing to run, this network namespace has more than lo")
    deadline = time.monotonic() + spec["timeout_s"]
    workdir = Path(spec_path).parent
    with contextlib.ExitStack() as files:
        running = []
        try:
            for proc in spec["procs"]:
                out = files.enter_context(open(workdir / f"{proc['name']}.out", "w+"))
                err = files.enter_context(open(workdir / f"{proc['name']}.err", "w+"))
                popen = subprocess.Popen([proc["python"], "-c", proc["code"]], stdout=out, stderr=err, cwd=REPO)
                running.append((proc, popen, out, err))
        except BaseException:
            for _, popen, _, _ in running:  # a later start failed: leave nothing behind
                popen.kill()
                popen.wait()
            raise
        timed_out = _wait_all(running, deadline)
        report = []
        for proc, popen, out, err in running:
            out.seek(0)
            err.seek(0)
            name = proc["name"]
            report.append(
                {
                    "name": name,
                    "returncode": None if name in timed_out else popen.returncode,
                    "stdout": out.read(),
                    "stderr": err.read(),
                    "timed_out": name in timed_out,
                }
            )
    print(json.dumps(report))


if __name__ == "__main__":
    _drive(sys.argv[1])
