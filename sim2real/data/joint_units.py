"""A dataset's joint values -> an arm description's joints: counts, units, calibration, derived features.

LeRobot's SO-100 sets store the 5 arm joints and the jaw in degrees (newer sets the jaw as 0-100),
measured from LeRobot's calibration zero, which need not be the URDF's. `JointMap` turns such
values into the description's units (radians, metres for prismatic fingers) for qpos, qvel and
absolute joint targets alike, so the actions computed from targets and qpos stay consistent:

    position = sign x unit_scale x value + offset        velocity = sign x unit_scale x value

`ArmJoints` is what that needs from configs/arm/<arm>.yaml (joint order, gripper mapping, action
scales), read without the URDF: reading a Panda dataset in joint space needs no mani_skill, as
before. The kinematic chain is loaded only for forward kinematics (a derived tcp_pose, or
pd_ee_delta_pos actions).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim2real.contract import Contract
from sim2real.data.episode import DatasetError
from sim2real.robot.arm_model import ActionScales
from sim2real.robot.arm_yaml import ArmYaml
from sim2real.robot.description import GRIPPER_KINDS, Gripper, arm_config_path, load_arm
from sim2real.robot.kinematics import KinematicChain
from sim2real.ros.observation import mujoco_quat

JOINT_UNITS = ("radians", "degrees")
GRIPPER_UNITS = ("joint", "percent")
# Features computed from qpos when a dataset lacks them (LeRobot's SO-100 sets store positions only).
DERIVABLE = ("tcp_pose", "qvel")


@dataclass(frozen=True)
class ArmJoints:
    """An arm's joint layout and action mapping, from its description YAML (no URDF parsed).

    Args:
        name: the description (configs/arm/<name>.yaml).
        joint_names: the arm joints, in chain order; qpos holds them, then the gripper joints.
        gripper: the gripper's joints and command <-> position map.
        scales: the action scales (control.joint_delta, control.ee_delta, gripper open/closed).
    """

    name: str
    joint_names: tuple[str, ...]
    gripper: Gripper
    scales: ActionScales

    @classmethod
    def read(cls, arm: str) -> ArmJoints:
        try:
            raw = ArmYaml.read(arm_config_path(arm))
            section = raw.section("gripper")
            kind = section.choice("kind", GRIPPER_KINDS)
            gripper = Gripper("none") if kind == "none" else Gripper(
                kind, section.strings("joints"), section.number("open"), section.number("closed"))
            control = raw.section("control")
            # An arm without ee modes has no control.ee_delta: 0, as ActionScales.for_arm gives it.
            scales = ActionScales(ee_delta_pos=control.number("ee_delta", default=0.0),
                                  joint_delta_pos=control.number("joint_delta"),
                                  finger_open=gripper.open, finger_closed=gripper.closed)
            return cls(arm, raw.strings("joints"), gripper, scales)
        except (ValueError, FileNotFoundError) as exc:
            raise DatasetError(f"dataset arm {arm!r}: {exc}") from exc

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def all_joints(self) -> tuple[str, ...]:
        """qpos order: the arm joints, then the gripper joints."""
        return self.joint_names + self.gripper.joint_names

    def chain(self) -> KinematicChain:
        """The arm's kinematic chain (parses its URDF, once per arm)."""
        return _chain(self.name)


@functools.lru_cache(maxsize=None)
def _chain(arm: str) -> KinematicChain:
    try:
        return load_arm(arm).chain
    except (ValueError, FileNotFoundError) as exc:
        raise DatasetError(f"dataset arm {arm!r}: forward kinematics needs its description and URDF: {exc}") from exc


@dataclass(frozen=True)
class JointMap:
    """Per-joint affine map (qpos order) from a dataset's joint values to the description's units."""

    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def build(cls, joints: ArmJoints, units: str, gripper_units: str, signs: Sequence[float],
              offsets: Sequence[float], where: str) -> JointMap:
        """Args as LeRobotOptions' joint_units, gripper_units, joint_signs, joint_offsets; `where`
        names the option section in errors."""
        n, g = joints.dof, len(joints.gripper.joint_names)
        if units not in JOINT_UNITS:
            raise DatasetError(f"{where} option joint_units={units!r}: expected one of {', '.join(JOINT_UNITS)}")
        if gripper_units not in GRIPPER_UNITS:
            raise DatasetError(f"{where} option gripper_units={gripper_units!r}: expected one of "
                               f"{', '.join(GRIPPER_UNITS)}")
        arm_scale = math.pi / 180.0 if units == "degrees" else 1.0
        gripper = joints.gripper
        if gripper_units == "percent":
            # 0 is the description's closed target, 100 its open position.
            grip_scale, grip_offset = (gripper.open - gripper.closed) / 100.0, gripper.closed
        else:
            # A revolute jaw is stored like the arm joints; prismatic fingers in metres.
            grip_scale, grip_offset = (arm_scale if gripper.kind == "revolute_jaw" else 1.0), 0.0
        names = ", ".join(joints.all_joints)
        for field, values in (("joint_signs", signs), ("joint_offsets", offsets)):
            if values and len(values) != n + g:
                raise DatasetError(f"{where} option {field} has {len(values)} values; arm {joints.name!r} has "
                                   f"{n + g} joints ({names})")
        if signs and any(s not in (1, -1) for s in signs):
            raise DatasetError(f"{where} option joint_signs={list(signs)}: expected +1 or -1 per joint ({names})")
        sign = np.asarray(signs, dtype=np.float64) if signs else np.ones(n + g)
        scale = sign * np.r_[np.full(n, arm_scale), np.full(g, grip_scale)]
        offset = np.r_[np.zeros(n), np.full(g, grip_offset)] + (np.asarray(offsets, dtype=np.float64)
                                                                  if offsets else 0.0)
        return cls(scale, offset)

    @property
    def identity(self) -> bool:
        return bool((self.scale == 1.0).all() and (self.offset == 0.0).all())

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Joint positions (or targets) [N, joints] -> the description's units."""
        return values if self.identity else values * self.scale + self.offset

    def velocities(self, values: np.ndarray) -> np.ndarray:
        return values if self.identity else values * self.scale


def joint_targets(values: np.ndarray, joints: ArmJoints, joint_map: JointMap, where: str, source: str,
                  names: object = None) -> np.ndarray:
    """Absolute joint targets [N, w] in the dataset's units -> [N, arm + gripper joints] in the
    description's. w is the arm's joints plus one target per gripper joint, or plus one target
    that drives every gripper joint (a Panda's single finger value). `source` (the parts, e.g.
    "action") and `names` (the dataset's own names for the values) are quoted in errors."""
    n, g = joints.dof, len(joints.gripper.joint_names)
    if g == 0:
        raise DatasetError(f"{where}: arm {joints.name!r} has no gripper (gripper.kind none); action_kind "
                           f"joint_targets converts arm and gripper targets")
    widths = sorted({n + g, n + 1})
    if values.shape[1] not in widths:
        found = f" (the dataset names them {names})" if names else ""
        raise DatasetError(f"{where}: action_kind joint_targets expects {' or '.join(map(str, widths))} values per "
                           f"frame for arm {joints.name!r} ({n} arm joints {', '.join(joints.joint_names)}, then "
                           f"{'one target per gripper joint or one for all' if g > 1 else 'the gripper'}); the "
                           f"action parts ({source}) give {values.shape[1]}{found}")
    if values.shape[1] != n + g:
        values = np.concatenate([values[:, :n], np.repeat(values[:, n:], g, axis=1)], axis=1)
    return joint_map.positions(values)


def check_derive(derive: Sequence[str], contract: Contract, where: str) -> None:
    """Refuse derived features that are unknown, not in the contract, or without qpos to derive from."""
    for name in derive:
        if name not in DERIVABLE:
            raise DatasetError(f"{where} option derive: {name!r} cannot be derived (derivable: "
                               f"{', '.join(DERIVABLE)})")
        if name not in contract.features:
            raise DatasetError(f"{where} option derive: {name!r} is not a feature of the contract "
                               f"({', '.join(contract.features)})")
    if derive and "qpos" not in contract.features:
        raise DatasetError(f"{where} option derive: {list(derive)} are computed from qpos, which the contract lacks")


@dataclass(frozen=True)
class DatasetArm:
    """The contract's arm as a reader needs it.

    Args:
        joints: its joint layout and action mapping.
        joint_map: the dataset's units and calibration -> the description's.
        base_pos: its base in the task frame (tasks.layout's ArmSetup, axes aligned); None for an
            arm without task scenes.
        model: kinematics given by the caller; None loads the description's chain when needed.
    """

    joints: ArmJoints
    joint_map: JointMap
    base_pos: tuple[float, float, float] | None
    model: KinematicChain | None = None

    @classmethod
    def build(cls, arm: str, units: str, gripper_units: str, signs: Sequence[float], offsets: Sequence[float],
              model: KinematicChain | None, where: str) -> DatasetArm:
        from tasks.layout import ARM_SETUPS

        joints = ArmJoints.read(arm)
        setup = ARM_SETUPS.get(arm)
        return cls(joints, JointMap.build(joints, units, gripper_units, signs, offsets, where),
                   setup.base_pos if setup else None, model)

    def chain(self) -> KinematicChain:
        return self.model if self.model is not None else self.joints.chain()

    def derive(self, name: str, qpos: np.ndarray, times_s: np.ndarray, where: str) -> np.ndarray:
        """Feature `name` [N, size] from qpos [N, joints] (description units) at the frames' times.

        qvel: central differences over the frames (one-sided at the ends), the velocity the
        simulator observes rather than a lagging backward difference. tcp_pose: forward
        kinematics of the arm joints moved from the base to the task frame, with the quaternion
        (w, x, y, z) in MuJoCo's sign convention, as the policy node's ObservationAssembler gives it.
        """
        if name == "qvel":
            return np.gradient(qpos, times_s, axis=0)
        if self.base_pos is None:
            raise DatasetError(f"{where}: derive tcp_pose needs the task frame, and arm {self.joints.name!r} has no "
                               f"task scenes (tasks.layout.ARM_SETUPS)")
        chain, base = self.chain(), np.asarray(self.base_pos, dtype=np.float64)
        out = np.empty((len(qpos), 7))
        for i, q in enumerate(qpos[:, :self.joints.dof]):
            rot, pos = chain.fk_matrix(q)
            out[i, :3], out[i, 3:] = pos + base, mujoco_quat(rot)
        return out
