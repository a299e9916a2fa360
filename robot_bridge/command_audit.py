"""An independent check of every joint command the policy node sends: finite, inside the
position limits, within one step and one period of velocity of the last command, and not run
off from the measured joints. It keeps its own record of the inputs and never asks the safety
filter, so a filter bug cannot hide itself (robot_bridge.faults and benchmarks/faults.py use it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robot_bridge.safety_limits import SafetyLimits
from sim2real.robot.arm_model import RobotModel
from sim2real.ros import messages as m
from sim2real.ros.observation import JOINT_NAMES

_TOL = 1e-9  # float slack on every limit (the filter computes in float64 too)


def command_positions(msg: Any) -> tuple[list[str], np.ndarray, float]:
    """Joint names, targets and the time the arm is given to reach them (a JointTrajectory's one point)."""
    if m.type_of(msg) != m.JOINT_TRAJECTORY:
        raise ValueError(f"CommandAudit: expected a {m.JOINT_TRAJECTORY}, got {m.type_of(msg)}")
    names = list(msg.joint_names)
    if len(msg.points) != 1:
        return names, np.full(len(names), np.nan), 0.0
    point = msg.points[0]
    return names, np.asarray(point.positions, dtype=np.float64), m.stamp_to_seconds(point.time_from_start)


class CommandAudit:
    """Checks each command sent to the arm against the limits, without asking the safety filter.

    The audit keeps its own record of what the node was told: `observe` every joint state
    delivered to the node. The newest finite one that was not older than the watchdog timeout
    when it arrived is the measured position (a reading is only trusted that long). A command is
    outside the limits when any of these fails (joint order: JOINT_NAMES):
      - it names every joint once, with one finite target each;
      - every target is inside the position limits (`limits.lower/upper`, inside the URDF's);
      - every target is at most min(max_step, velocity x T) from the previous command this arm
        received, T being the time the command gives the arm (its time_from_start); for an arm's
        first command, from its measured position: a restarted arm never heard the earlier ones;
      - every target is at most `max_tracking_error` from the measured position;
      - the TCP of the commanded arm joints (forward kinematics) is inside the workspace box.
    After `new_arm`, commands wait for the new arm's first joint state and are judged against it:
    the arm may have executed them before the node knew where it was.

    Args:
        model: the arm's kinematics (FK for the box).
        limits: the limits the deployment promised (from the URDF and the node's parameters).
    """

    def __init__(self, model: RobotModel, limits: SafetyLimits) -> None:
        self.model, self.limits = model, limits
        if tuple(limits.joint_names) != tuple(JOINT_NAMES):
            raise ValueError(f"CommandAudit: limits for {list(limits.joint_names)}; expected {list(JOINT_NAMES)}")
        self.lower, self.upper = np.array(limits.lower), np.array(limits.upper)
        self.velocity, self.max_step = np.array(limits.velocity), np.array(limits.max_step)
        self.tracking = np.array(limits.max_tracking_error)
        self.box_lo, self.box_hi = np.array(limits.workspace_lo), np.array(limits.workspace_hi)
        self.commands = self.outside = 0
        self.violations: list[str] = []  # the first few, for the report
        self.measured: np.ndarray | None = None
        self._stamp = -math.inf
        self._previous: np.ndarray | None = None
        self._waiting: list[tuple[float, Any]] | None = None  # commands since new_arm, before its first state

    def new_arm(self) -> None:
        """A new arm instance (a restart): where it is, is unknown until its first joint state."""
        self._previous, self.measured, self._waiting = None, None, []

    def observe(self, msg: Any, t: float) -> None:
        """A sensor_msgs/JointState delivered to the node at time t."""
        names = list(msg.name)
        position = np.asarray(msg.position, dtype=np.float64)
        stamp = m.stamp_to_seconds(msg.header.stamp)
        if sorted(names) != sorted(JOINT_NAMES) or position.size != len(names) or \
                not np.all(np.isfinite(position)) or not np.all(np.isfinite(np.asarray(msg.velocity))):
            return
        if stamp <= self._stamp or t - stamp > self.limits.watchdog_timeout:
            return
        self.measured, self._stamp = position[[names.index(n) for n in JOINT_NAMES]], stamp
        waiting, self._waiting = self._waiting or [], None
        for sent, command in waiting:
            self._judge(command, sent)

    def check(self, msg: Any, t: float) -> None:
        """Audit one command message sent at time t (at once, or when a new arm first reports)."""
        self.commands += 1
        if self._waiting is not None:
            self._waiting.append((t, msg))
        else:
            self._judge(msg, t)

    @property
    def unjudged(self) -> int:
        """Commands still waiting for a new arm's first joint state."""
        return len(self._waiting or [])

    def _judge(self, msg: Any, t: float) -> None:
        problems = self._problems(msg)
        if problems:
            self.outside += 1
            if len(self.violations) < 10:
                self.violations.append(f"t={t:.3f}: " + "; ".join(problems))

    def _problems(self, msg: Any) -> list[str]:
        names, values, duration = command_positions(msg)
        if sorted(names) != sorted(JOINT_NAMES) or values.size != len(names):
            return [f"joint names {names}: expected each of {list(JOINT_NAMES)} once"]
        q = values[[names.index(n) for n in JOINT_NAMES]]
        if not np.all(np.isfinite(q)):
            return [f"non-finite targets {q.tolist()}"]
        if self.measured is None:
            return ["a command before any joint state"]
        problems: list[str] = []
        self._bound(problems, "position limit", q < self.lower - _TOL, q > self.upper + _TOL, q)
        ref = self.measured if self._previous is None else self._previous
        step = np.minimum(self.max_step, self.velocity * duration)
        self._bound(problems, "step from the previous command", q - ref < -step - _TOL, q - ref > step + _TOL,
                    q - ref)
        gap = q - self.measured
        self._bound(problems, "distance from the measured joints", gap < -self.tracking - _TOL,
                    gap > self.tracking + _TOL, gap)
        _, tcp = self.model.fk_matrix(q[:self.model.dof])
        if np.any(tcp < self.box_lo - _TOL) or np.any(tcp > self.box_hi + _TOL):
            problems.append(f"TCP {np.round(tcp, 4).tolist()} outside the workspace box")
        self._previous = q
        return problems

    @staticmethod
    def _bound(problems: list[str], what: str, low: np.ndarray, high: np.ndarray, value: np.ndarray) -> None:
        bad = low | high
        if bad.any():
            problems.append(f"{what}: " + ", ".join(f"{n}={v:+.4f}" for n, v, b in zip(JOINT_NAMES, value, bad) if b))
