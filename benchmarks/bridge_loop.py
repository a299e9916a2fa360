#!/usr/bin/env python
"""The ROS 2 control loop, end to end: simulated arm + policy node on loopback, one transport.

    python benchmarks/bridge_loop.py transport=dds
    python benchmarks/bridge_loop.py transport=rclpy duration_s=20 planner=policy
    python benchmarks/bridge_loop.py transport=dds checkpoint=outputs/.../last.pt

Starts `sim2real_sim_robot` (MuJoCo Panda, joint states at 100 Hz) and `sim2real_policy_node`
(the checkpoint's PlanningPolicy; without `checkpoint=` an untrained `tiny` model with a CDRED
objective, which costs what a trained one costs) as two processes in a fresh network namespace
with loopback-only DDS settings, lets the policy run for `duration_s`, and prints

    bridge transport=<t> planner=<p> control_hz=<c> achieved_hz=<a> loop_p50_ms=<x> loop_p99_ms=<y> overruns=<n>

where loop = a joint state's arrival at the policy node -> the command computed from it published
(observation assembly, planning, IK, safety filter, serialisation). With transport=rclpy both
nodes run with the rclpy venv's Python (scripts/rclpy_venv.sh), torch and MuJoCo taken from this
environment. Arguments: transport (dds|rclpy), duration_s (10), planner (deploy; a configs/planner
preset), checkpoint, domain_id (62), rclpy_python.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.args import key_values  # noqa: E402

from robot_bridge.deploy import untrained_checkpoint  # noqa: E402
from robot_bridge.node_process import (  # noqa: E402
    NodeProcess, ensure_network_namespace, find_rclpy_python, node_command, require_network_namespace,
)

DEFAULTS = {"transport": "dds", "duration_s": "10", "planner": "deploy", "checkpoint": "", "domain_id": "62",
            "rclpy_python": ""}


def parse(argv: list[str]) -> dict[str, str]:
    args = key_values(argv, DEFAULTS, "bridge_loop")
    if args["transport"] not in ("dds", "rclpy"):
        raise SystemExit(f"bridge_loop: transport={args['transport']!r}; expected dds or rclpy")
    return args


def measure(transport: str, duration_s: float, planner: str, checkpoint: str, workdir: Path,
            rclpy_python: str = "") -> dict[str, Any]:
    """Run both nodes for `duration_s` of control; returns the policy node's final status."""
    require_network_namespace(False, "bridge_loop")
    python = find_rclpy_python(rclpy_python) if transport == "rclpy" else sys.executable
    if not checkpoint:
        checkpoint = str(untrained_checkpoint(workdir / "tiny.pt"))
    params = {
        "sim2real_sim_robot": {"ros__parameters": {"task": "push_cube", "domain": "source", "transport": transport,
                                                   "duration_s": duration_s + 120.0}},
        "sim2real_policy_node": {"ros__parameters": {"checkpoint": checkpoint, "planner": planner,
                                                     "transport": transport, "duration_s": duration_s,
                                                     "startup_timeout_s": 60.0}},
    }
    params_file = workdir / "ros_params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    args = ["--ros-args", "--params-file", str(params_file)]
    sim = NodeProcess("sim2real_sim_robot", node_command("robot_bridge.sim_robot", python, args), workdir)
    policy = NodeProcess("sim2real_policy_node", node_command("robot_bridge.policy_loop", python, args), workdir)
    try:
        deadline = time.monotonic() + duration_s + 120.0
        while policy.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        policy.stop()
        sim.stop()
    status = policy.final_status()
    if status is None:
        raise RuntimeError("bridge_loop: the policy node reported nothing\n" + policy.describe() + "\n"
                           + sim.describe())
    return status


def main() -> None:
    args = parse(sys.argv[1:])
    ensure_network_namespace([sys.executable, *sys.argv], allow_network=False, domain_id=int(args["domain_id"]))
    with tempfile.TemporaryDirectory(prefix="bridge-loop-") as tmp:
        s = measure(args["transport"], float(args["duration_s"]), args["planner"], args["checkpoint"], Path(tmp),
                    args["rclpy_python"])
    print(f"bridge transport={args['transport']} planner={args['planner']} control_hz={s['control_hz']:g} "
          f"achieved_hz={s['achieved_hz']:.2f} loop_p50_ms={s['loop_p50_ms']:.2f} loop_p99_ms={s['loop_p99_ms']:.2f} "
          f"overruns={s['overruns']}", flush=True)


if __name__ == "__main__":
    main()
