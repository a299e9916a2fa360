"""Where a bag's actions come from when the policy node's decided actions are not recorded.

Two sources (`RosbagOptions.actions_from`):
- "command": the joint targets commanded to the arm (trajectory_msgs/JointTrajectory or
  std_msgs/Float64MultiArray), the one in force at each action time, converted to the control
  mode against the observed joint positions;
- "next_state": the next measured joint state taken as the target. For demos that have no
  command topic: hand-guided (kinesthetic) teaching, MoveIt plans and FollowJointTrajectory
  goals executed by the controller. The action is then the motion the arm made in one period,
  divided by `next_state_gain`: the share of a commanded step the arm's controller completes
  within one period. A controller that reaches its targets within a period has gain 1; the
  simulated Panda under the trajectory interface completes about 0.32 (`tracking_gain` fits it
  on a recording that has commands, as `scripts/inspect_data.py --suggest` does).

Both convert with the arm's own action scales (sim2real.robot.arm_model.ActionScales.for_arm) and
map the gripper as `RosbagOptions.gripper` says.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim2real.contract import Contract
from sim2real.data.actions import binary_gripper_actions, next_state_actions, targets_to_actions
from sim2real.data.bag_streams import Bag, Stream, message_error
from sim2real.data.config import RosbagOptions
from sim2real.data.episode import DatasetError
from sim2real.data.resample import NS, hold_indices
from sim2real.robot.arm_model import ActionScales
from sim2real.robot.description import load_arm
from sim2real.robot.kinematics import KinematicChain
from sim2real.ros import messages as m

ACTIONS_FROM = ("command", "next_state")


class BagActions:
    """Reconstructs unclipped actions [T, A] for one reader's contract and options.

    Args:
        contract: the control mode and arm the actions are for.
        options: the reader's options (command joints, gripper mapping, unknown joints).
        model: the arm's kinematics (joint names, gripper limits; FK for pd_ee_delta_pos).
        period: the control period in ns.
    """

    def __init__(self, contract: Contract, options: RosbagOptions, model: KinematicChain, period: int) -> None:
        self.contract, self.options, self.model, self.period = contract, options, model, period
        self.scales = ActionScales.for_arm(load_arm(contract.arm))
        self.arm_joints = tuple(model.joint_names)
        self.joint_names = self.arm_joints + tuple(model.gripper_limits)
        names = list(options.command_joints) or list(self.joint_names)
        if len(set(names)) != len(names) or any(n not in self.joint_names for n in names):
            raise DatasetError(f"rosbag option command_joints={names}: expected distinct names among "
                               f"{list(self.joint_names)}")
        self.command_joints = names

    # ---- from commands -----------------------------------------------------------------------
    def command_targets(self, bag: Bag, stream: Stream, i: int) -> np.ndarray:
        """One command -> targets [joints] in joint_names order (NaN for joints it does not command)."""
        msg = stream.msgs[i]
        if stream.msgtype == m.JOINT_TRAJECTORY:
            names = list(msg.joint_names)
            if not msg.points:
                raise message_error(bag, stream, i, ["joint trajectory has no points"])
            period_s = self.period / NS
            later = [p for p in msg.points if m.stamp_to_seconds(p.time_from_start) >= period_s - 1e-9]
            point = later[0] if later else msg.points[-1]  # where the trajectory is one period after it starts
            values = np.asarray(point.positions, dtype=np.float64).reshape(-1)
        else:
            names = self.command_joints
            values = np.asarray(msg.data, dtype=np.float64).reshape(-1)
        if values.size != len(names):
            raise message_error(bag, stream, i, [f"command has {values.size} positions for {len(names)} joints "
                                                 f"{names}"])
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise message_error(bag, stream, i, [f"command repeats joints {repeated}"])
        unknown = [n for n in names if n not in self.joint_names]
        if unknown and not self.options.ignore_unknown_joints:
            raise message_error(bag, stream, i, [f"command has unknown joints {unknown} (expected "
                                                 f"{list(self.joint_names)}; set ignore_unknown_joints to drop them)"])
        missing = [n for n in self.arm_joints if n not in names]
        if missing:
            raise message_error(bag, stream, i, [f"command lacks arm joints {missing}"])
        targets = np.full(len(self.joint_names), np.nan)
        for name, value in zip(names, values):
            if name in self.joint_names:
                if not math.isfinite(value):
                    raise message_error(bag, stream, i, [f"command has NaN/inf for {name}"])
                targets[self.joint_names.index(name)] = value
        return targets

    def from_commands(self, bag: Bag, act_t: np.ndarray, qpos: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Actions from the commands in force at act_t [T] against qpos [T+1, joints], and counts
        of held and skipped commands."""
        stream = bag.streams["command"]
        idx = hold_indices(stream.times, act_t)
        targets = {i: self.command_targets(bag, stream, i) for i in range(int(idx[0]), int(idx[-1]) + 1)}
        chosen = np.stack([targets[i] for i in idx])
        n = len(self.arm_joints)
        arm, fingers = chosen[:, :n], chosen[:, n:]
        measured = qpos[:, n:].mean(axis=1)
        if np.isnan(fingers).all(axis=1).any():
            if not self.options.gripper_from_state:
                raise DatasetError(f"{bag.path}: topic {stream.topic}: commands carry no finger joint "
                                   f"{list(self.joint_names[n:])}; set gripper_from_state to take the gripper "
                                   f"action from the measured fingers")
            finger = measured[1:]
        else:
            finger = np.nanmean(fingers, axis=1)
        # Before the first target the fingers were where they were measured, or where the command
        # before it sent them.
        before = float(measured[0]) if idx[0] <= 0 else float(np.nanmean(
            self.command_targets(bag, stream, int(idx[0]) - 1)[n:]))
        raw = self._convert(qpos[:-1], arm, finger, before)
        steps = np.diff(idx)
        return raw, {"action_source": "commands", "held_commands": int(np.count_nonzero(steps == 0)),
                     "skipped_commands": int(np.clip(steps - 1, 0, None).sum())}

    # ---- from the next measured state -----------------------------------------------------------
    def from_next_state(self, qpos: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Actions [T] taking each next measured joint state qpos[k + 1] as the target from qpos[k]."""
        raw = next_state_actions(self.contract.control_mode, qpos, len(self.arm_joints), self.model, self.scales,
                                 self.options.next_state_gain, self._binary())
        return raw, {"action_source": "next_state"}

    def _binary(self) -> tuple[float, float] | None:
        """The gripper joints' mean (closed, open) limits for the binary reading; None for linear."""
        if self.options.gripper != "binary":
            return None
        limits = list(self.model.gripper_limits.values())
        return float(np.mean([g.lower for g in limits])), float(np.mean([g.upper for g in limits]))

    def _convert(self, qpos: np.ndarray, arm: np.ndarray, finger: np.ndarray, before: float) -> np.ndarray:
        raw = targets_to_actions(self.contract.control_mode, qpos, arm, finger, self.model, self.scales)
        binary = self._binary()
        if binary is not None:
            raw[:, -1] = binary_gripper_actions(finger, before, *binary)
        return raw


def tracking_gain(commanded: np.ndarray, next_state: np.ndarray) -> float:
    """The least-squares share of the commanded arm actions [T, A] that the measured motion
    (next_state actions at gain 1, [T, A]) achieved: `next_state_gain` for this arm and controller.
    The gripper (last column) is left out. NaN when the arm never moved."""
    x = np.asarray(commanded, dtype=np.float64)[:, :-1]
    y = np.asarray(next_state, dtype=np.float64)[:, :-1]
    # Saturated commands say less than asked: fit on the steps where every value is inside [-1, 1].
    inside = (np.abs(x) < 0.999).all(axis=1)
    x, y = x[inside], y[inside]
    denom = float((x * x).sum())
    return float((x * y).sum() / denom) if denom > 0 else math.nan
