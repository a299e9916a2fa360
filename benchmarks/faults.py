#!/usr/bin/env python
"""Resilience: the policy node and the simulated arm under faulty inputs and a robot restart.

    python benchmarks/faults.py
    python benchmarks/faults.py cases=stall,robot_restart duration_s=10 seed=3
    python benchmarks/faults.py domain=target out=outputs/benchmarks/faults.json
    python benchmarks/faults.py transport=dds duration_s=8

Each case runs `duration_s` of control at the contract's 20 Hz: the real `PolicyNodeCore`
(observation assembly, a scripted end-effector reach whose target alternates every second,
IK, safety filter, command messages) and the real `SimRobotCore` (MuJoCo Panda, joint states at
100 Hz, trajectory commands) stepped together in simulated time, with a fault injector between
the arm's messages and the node (robot_bridge.faults.run_case). The run is deterministic for a seed.
Faults happen after a clean first second and stop `recovery_s` (1.5 s) before the end:

  clean          no fault, the baseline.
  drop10         10% of joint states lost at random.
  stall          the joint-state stream stalls for 50-200 ms at random times (one 50 ms and one
                 200 ms stall always among them); the held-up messages then arrive in a burst,
                 the last 5 only (the sensor-data QoS depth). Stalls past the watchdog timeout
                 (2 periods, 100 ms) trip the node's watchdog: it sends nothing until states return.
  out_of_order   20% of joint states arrive 10-30 ms late, after newer ones, with their old stamps.
  nan            10% of joint states carry NaN/inf in a position or velocity, 10% of object poses
                 in a position or quaternion component.
  robot_restart  the arm goes away for 0.5-1.5 s (no messages; commands lost) and comes back as
                 a new simulated arm at the task's rest pose that never saw the earlier commands;
                 it hears commands 0.2 s before the node hears it (discovery is not symmetric).

One line per case, then a summary:

    faults case=<c> commands=<n> outside_limits=<n> watchdog_trips=<n> recovered=<true|false>
    faults cases=<k> outside_limits=<total> recovered=<r>/<k>

commands: command messages the node sent (one per tick, none while its watchdog holds).
outside_limits: how many of them fail an audit that never asks the safety filter
(robot_bridge.command_audit.CommandAudit): finite, inside the position limits, at most
min(max_step, velocity x time_from_start) from the previous command that arm received (a
restarted arm: from where it first reported, also for the commands it heard before that), at
most max_tracking_error from the newest valid joint state the node was given, TCP (forward
kinematics) inside the workspace box. It must be 0; the script exits with status 1 otherwise.
watchdog_trips: the filter's count of times it held for lack of fresh joint states. recovered:
each of the last 10 ticks sent a command the policy computed and the filter did not hold, and
the arm's TCP ended within 2 cm of the target set when the faults stopped (the target moves
~0.27 m then, so the arm had to follow).

transport=dds runs the same cases over ROS 2 topics, in real time, inside a fresh network
namespace with loopback-only DDS settings: `sim2real_sim_robot` as its own process publishing on
/faults/raw/*, a relay in this process that passes its messages through the same fault injector
to /joint_states and /object_pose and audits every command on /arm_controller/joint_trajectory,
and the policy node's own rate loop (`run_policy_node`, dds transport) in a thread. robot_restart
stops the arm's process (SIGTERM) 0.5 s into the fault window and starts a new one once the node
has sent nothing for 0.25 s (at most 1 s later): the arm is away for as long as a process takes
to start and be discovered. Commands sent after the new process started and before its first
joint state arrived are audited against that state (the new arm may have executed them). Timing
depends on the machine: give it duration_s=8 or more.

Arguments (key=value): cases (all, or a comma list), duration_s (6), seed (0), domain (source:
no sensor noise; a configs/domain preset), transport (inprocess | dds), domain_id (66, dds),
out (a JSON file for every case's details).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.args import key_values  # noqa: E402

from sim2real.ros import messages as m  # noqa: E402
from robot_bridge.command_audit import CommandAudit  # noqa: E402
from robot_bridge.faults import (  # noqa: E402
    CASES, REACH_TOL_M, RECOVERY_TICKS, TARGETS, AlternatingReach, CaseResult, FaultConfig, FaultLink,
    reach_target, run_case,
)
from sim2real.atomic import atomic_write  # noqa: E402

DEFAULTS = {"cases": "all", "duration_s": "6", "seed": "0", "domain": "source", "transport": "inprocess",
            "domain_id": "66", "out": ""}
RAW = "/faults/raw"  # where the simulated arm publishes; the relay republishes on the usual topics
RESTART_QUIET_S = 0.25  # dds robot_restart: the new arm starts once the node has been quiet this long (or after 1 s)


def parse(argv: list[str]) -> dict[str, str]:
    args = key_values(argv, DEFAULTS, "faults")
    unknown = [c for c in cases(args) if c not in CASES]
    if unknown:
        raise SystemExit(f"faults: cases={args['cases']!r}: unknown {unknown}; expected all or some of {list(CASES)}")
    if args["transport"] not in ("inprocess", "dds"):
        raise SystemExit(f"faults: transport={args['transport']!r}; expected inprocess or dds")
    return args


def cases(args: dict[str, str]) -> list[str]:
    return list(CASES) if args["cases"] == "all" else [c for c in args["cases"].split(",") if c]


def line(r: CaseResult) -> str:
    return (f"faults case={r.case} commands={r.commands} outside_limits={r.outside_limits} "
            f"watchdog_trips={r.watchdog_trips} recovered={str(r.recovered).lower()}")


# ---- transport=dds ---------------------------------------------------------------------------

class Relay:
    """The arm's raw topics -> `FaultLink` -> the node's topics; every command on the way back audited.

    Fault times count from the first command (t0), when the node's control loop has started.
    """

    def __init__(self, case: str, cfg: FaultConfig, audit: CommandAudit) -> None:
        from robot_bridge.transport import QoS, make_transport

        self.link = FaultLink(case, cfg, math.inf, 0.01)  # the simulated arm's 100 Hz joint states
        self.audit = audit
        self.last_command = -math.inf
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.transport = make_transport("dds", "sim2real_fault_relay")
        self.states = self.transport.publisher("/joint_states", m.JOINT_STATE, QoS.SENSOR_DATA)
        self.poses = self.transport.publisher("/object_pose", m.POSE_STAMPED)
        self.transport.subscribe(f"{RAW}/joint_states", m.JOINT_STATE,
                                 lambda msg: self.link.send("joint_states", msg, time.time()), QoS.SENSOR_DATA)
        self.transport.subscribe(f"{RAW}/object_pose", m.POSE_STAMPED,
                                 lambda msg: self.link.send("object_pose", msg, time.time()), QoS.SENSOR_DATA)
        self.transport.subscribe("/arm_controller/joint_trajectory", m.JOINT_TRAJECTORY, self._command)
        self.transport.subscribe("/sim2real_policy_node/status", m.STRING,
                                 lambda msg: self.statuses.append((time.time(), json.loads(msg.data))))

    def _command(self, msg: Any) -> None:
        now = time.time()
        if not math.isfinite(self.link.t0):
            self.link.t0 = now
        self.last_command = now
        self.audit.check(msg, now)

    def new_arm(self) -> None:
        """A new arm process starts: what it hears before it reports is judged by where it reports."""
        self.audit.new_arm()
        self.link.counts.restarts += 1

    def spin(self, timeout_s: float) -> None:
        self.transport.spin_once(timeout_s)
        now = time.time()
        for topic, msg in self.link.receive(now):
            if topic == "object_pose":
                self.poses.publish(msg)
                continue
            self.audit.observe(msg, now)
            self.states.publish(msg)


def sim_robot_params(cfg: FaultConfig, domain: str, path: Path) -> Path:
    params = {"task": "push_cube", "domain": domain, "seed": cfg.seed, "transport": "dds",
              "joint_states_topic": f"{RAW}/joint_states", "object_pose_topic": f"{RAW}/object_pose",
              "goal_topic": "", "duration_s": cfg.duration_s + 120.0}
    path.write_text(yaml.safe_dump({"sim2real_sim_robot": {"ros__parameters": params}}))
    return path


def held_in_tail(statuses: list[tuple[float, dict[str, Any]]], period: float) -> int:
    """Held or policy-less ticks among the last RECOVERY_TICKS, from the node's status counters (-1: unknown)."""
    if not statuses:
        return -1
    end_time, end = statuses[-1]
    earlier = [s for t, s in statuses if t <= end_time - RECOVERY_TICKS * period]
    if not earlier:
        return -1
    start = earlier[-1]
    acted = end["policy_steps"] - start["policy_steps"]
    return end["safety"]["held"] - start["safety"]["held"] + max(0, RECOVERY_TICKS - acted)


def run_dds_case(case: str, cfg: FaultConfig, domain: str, workdir: Path) -> CaseResult:
    """One case in real time over DDS (see the module docstring); the caller is in a network namespace."""
    from robot_bridge.node_process import NodeProcess, node_command, require_network_namespace
    from sim2real.robot.arm_model import RobotModel
    from robot_bridge.policy_loop import run_policy_node
    from robot_bridge.policy_node import PolicyNodeParams
    from robot_bridge.safety_limits import SafetyLimits

    require_network_namespace(False, "faults transport=dds")
    policy = AlternatingReach()
    params = PolicyNodeParams(policy="reach", reach_target=list(TARGETS[0]), goal_topic="", transport="dds",
                              duration_s=cfg.duration_s, startup_timeout_s=60.0, status_period_s=0.1)
    model = RobotModel.from_urdf()
    period = 1.0 / policy.contract.control_freq
    relay = Relay(case, cfg, CommandAudit(model, SafetyLimits.from_params(model, {"control_period": period})))
    argv = node_command("robot_bridge.sim_robot", sys.executable,
                        ["--ros-args", "--params-file", str(sim_robot_params(cfg, domain, workdir / "sim.yaml"))])
    arm = NodeProcess("sim2real_sim_robot", argv, workdir)
    status: dict[str, Any] = {}
    failed: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            status.update(run_policy_node(params, policy=policy, stop=stop))
        except BaseException as exc:  # re-raised below, in the benchmark's thread
            failed.append(exc)

    node = threading.Thread(target=serve)
    node.start()
    phase, stopped, last_arm = "running" if case == "robot_restart" else "", math.inf, arm
    try:
        deadline = time.monotonic() + cfg.duration_s + 120.0
        while node.is_alive() and time.monotonic() < deadline:
            relay.spin(0.002)
            now = time.time()
            policy.target = reach_target(max(now - relay.link.t0, 0.0), cfg)
            if phase == "running" and now - relay.link.t0 >= cfg.fault_start_s + 0.5:
                arm.stop()
                relay.link.cut()
                phase, stopped = "stopped", now
            elif phase == "stopped" and (now - max(stopped, relay.last_command) >= RESTART_QUIET_S
                                         or now - stopped >= 1.0):
                # Commands sent before the new process exists reach nobody; from here on they may reach it.
                relay.new_arm()
                last_arm = arm = NodeProcess("sim2real_sim_robot", argv, workdir)
                phase = "restarted"
            elif phase == "restarted" and relay.audit.measured is not None:
                relay.link.counts.down_s = now - stopped
                phase = "back"
    finally:
        stop.set()
        node.join(timeout=30)
        relay.transport.close()
        arm.stop()
    if failed:
        raise RuntimeError(f"faults: the policy node stopped: {failed[0]}\n{last_arm.describe()}") from failed[0]
    if not status:
        raise RuntimeError("faults: the policy node reported nothing\n" + last_arm.describe())
    final = last_arm.final_status() or {}
    reach = float(np.linalg.norm(np.array(final["tcp_pose"][:3]) - policy.target)) if "tcp_pose" in final \
        else math.inf
    held = held_in_tail(relay.statuses, period)
    return CaseResult(case, relay.audit.commands, relay.audit.outside, status["watchdog_trips"],
                      held == 0 and reach <= REACH_TOL_M, relay.link.counts, status, reach, held,
                      relay.audit.violations, policy.nonfinite, int(final.get("rejected", -1)))


def main() -> None:
    args = parse(sys.argv[1:])
    if args["transport"] == "dds":
        from robot_bridge.node_process import ensure_network_namespace

        ensure_network_namespace([sys.executable, *sys.argv], allow_network=False, domain_id=int(args["domain_id"]))
    logging.basicConfig(level=logging.ERROR)  # the node warns about every rejected message; the counts say it
    try:
        cfg = FaultConfig(duration_s=float(args["duration_s"]), seed=int(args["seed"]))
    except ValueError as exc:
        raise SystemExit(f"faults: {exc}") from None
    results = []
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        for case in cases(args):
            if args["transport"] == "dds":
                results.append(run_dds_case(case, cfg, args["domain"], Path(tmp)))
            else:
                results.append(run_case(case, cfg, domain=args["domain"]))
            print(line(results[-1]), flush=True)
    outside = sum(r.outside_limits for r in results)
    print(f"faults cases={len(results)} outside_limits={outside} "
          f"recovered={sum(r.recovered for r in results)}/{len(results)}", flush=True)
    if args["out"]:
        path = Path(args["out"])
        details = [{**dataclasses.asdict(r), "reach_error_m": r.reach_error_m if math.isfinite(r.reach_error_m)
                    else None} for r in results]
        atomic_write(path, json.dumps({"args": args, "config": dataclasses.asdict(cfg), "cases": details}, indent=1))
    if outside:
        for r in results:
            for violation in r.violations:
                print(f"faults {r.case}: {violation}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
