"""The arm model at run time: the Panda's chain from its URDF and task actions -> joint targets (numpy only).

`RobotModel.from_urdf()` reads the serial chain base -> TCP of ManiSkill's `panda_v2.urdf`
(the file both simulators build the arm from) with its joint limits and velocity limits,
plus the finger joints' limits. `fk` gives the TCP pose in the base frame (`panda_link0`);
the tasks' observations are in the table frame, which is the base frame shifted by
`tasks.layout.ROBOT_BASE_POS`.

Inverse kinematics is damped least squares, iterated the way tasks.mujoco.control does it
(same damping, tolerance and stall rule), so an end-effector delta action becomes the same
joint targets on the real arm as in the MuJoCo backend.

The generic URDF chain reader, FK, Jacobian and IK are sim2real.robot.kinematics; this module
gives them the Panda's defaults and converts task actions to joint targets.

The joint names, links and action scales come from configs/arm/panda.yaml; tasks.layout keeps
the simulators' copies, and tests/test_kinematics.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real.robot.arm_yaml import ArmYaml
from sim2real.robot.description import ArmDescription, arm_config_path, arm_urdf_path
from sim2real.robot.kinematics import KinematicChain

# The Panda as configs/arm/panda.yaml describes it, read without its URDF (no mani_skill needed
# to import this module): the names every consumer of this module uses, and the action scales.
_PANDA = ArmYaml.read(arm_config_path("panda"))
ARM_JOINT_NAMES = _PANDA.strings("joints")
FINGER_JOINT_NAMES = _PANDA.section("gripper").strings("joints")
BASE_LINK = _PANDA.string("base_link")
TCP_LINK = _PANDA.string("tcp_link")


@dataclass(frozen=True)
class ActionScales:
    """How a normalised task action maps to targets (defaults: configs/arm/panda.yaml, as tasks.layout).

    Args:
        ee_delta_pos: metres the TCP target moves per step for action +-1 (pd_ee_delta_pos).
        joint_delta_pos: radians each joint target moves per step for action +-1 (pd_joint_delta_pos).
        finger_open: finger joint target for gripper action +1.
        finger_closed: finger joint target for gripper action -1 (below the URDF's lower limit:
            the simulated drive keeps squeezing; the safety filter clamps it to the limit).
    """

    ee_delta_pos: float = _PANDA.section("control").number("ee_delta")
    joint_delta_pos: float = _PANDA.section("control").number("joint_delta")
    finger_open: float = _PANDA.section("gripper").number("open")
    finger_closed: float = _PANDA.section("gripper").number("closed")

    @classmethod
    def for_arm(cls, arm: ArmDescription) -> ActionScales:
        """The scales an arm's description gives (control.ee_delta / joint_delta, gripper open / closed)."""
        return cls(ee_delta_pos=arm.control.ee_delta or 0.0, joint_delta_pos=arm.control.joint_delta,
                   finger_open=arm.gripper.open, finger_closed=arm.gripper.closed)

    def gripper_target(self, a: float) -> float:
        """Finger joint target for the normalised gripper action a in [-1, 1] (linear)."""
        return self.finger_closed + (a + 1.0) / 2.0 * (self.finger_open - self.finger_closed)


class RobotModel(KinematicChain):
    """The Panda's `KinematicChain` (sim2real.robot.kinematics): `from_urdf()` without arguments reads
    ManiSkill's panda_v2.urdf, base panda_link0 -> TCP panda_hand_tcp, with both finger joints."""

    @classmethod
    def from_urdf(cls, path: str | Path | None = None, base_link: str = BASE_LINK,
                  tip_link: str = TCP_LINK, gripper_joints: tuple[str, ...] = FINGER_JOINT_NAMES) -> RobotModel:
        """Parse the chain base_link -> tip_link of `path` (default: ManiSkill's panda_v2.urdf)."""
        return super().from_urdf(path if path is not None else arm_urdf_path("panda"), base_link, tip_link,
                                 gripper_joints)


def _gripper_dims(model: KinematicChain) -> int:
    """Task actions end with one gripper command when the arm has a gripper, none otherwise."""
    return 1 if model.gripper_limits else 0


def action_dim(model: KinematicChain, control_mode: str) -> int:
    """The size of a task action for this arm: dx, dy, dz (pd_ee_delta_pos) or one delta per arm
    joint (pd_joint_delta_pos), then the gripper command when the arm has a gripper."""
    return (3 if control_mode == "pd_ee_delta_pos" else model.dof) + _gripper_dims(model)


def ee_delta_action_to_joint_targets(model: KinematicChain, q: np.ndarray, action: np.ndarray,
                                     ref_quat: np.ndarray | None = None, scales: ActionScales = ActionScales(),
                                     hold_orientation: bool = True, **ik_kwargs: object) -> np.ndarray:
    """A `pd_ee_delta_pos` action [3 (+1 gripper)] -> arm joint targets [n] followed by one target per
    gripper joint.

    As in the tasks: the action is clipped to [-1, 1]; the TCP target is the current TCP position
    plus scales.ee_delta_pos x action[:3]; the last dim drives every gripper joint linearly between
    finger_closed (-1) and finger_open (+1).

    Args:
        q: the arm's current joint positions [n].
        ref_quat: orientation (w, x, y, z) to hold. The MuJoCo backend holds the TCP orientation of
            the episode's start: pass that to match it. None holds the current orientation
            (ManiSkill's behaviour).
        hold_orientation: False for arms with position-only IK (fewer than 6 joints, the SO-100):
            only the TCP position is solved for and ref_quat is ignored.
    """
    grip = _gripper_dims(model)
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    size = action_dim(model, "pd_ee_delta_pos")
    if action.shape != (size,):
        raise ValueError(f"pd_ee_delta_pos action: expected {size} values (dx, dy, dz{', gripper' * grip}), "
                         f"got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_ee_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if not hold_orientation:
        ref_quat = None
    elif ref_quat is None:
        ref_quat = model.fk(q)[1]
    arm = model.ik_delta(q, scales.ee_delta_pos * action[:3], ref_quat, **ik_kwargs)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[-1])) if grip else 0.0)
    return np.concatenate([arm, fingers])


def joint_delta_action_to_joint_targets(model: KinematicChain, q: np.ndarray, action: np.ndarray,
                                        scales: ActionScales = ActionScales()) -> np.ndarray:
    """A `pd_joint_delta_pos` action [n (+1 gripper)] -> arm targets q + scale x action (within the URDF
    limits) followed by the gripper targets, as the tasks map it."""
    grip = _gripper_dims(model)
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    size = action_dim(model, "pd_joint_delta_pos")
    if action.shape != (size,):
        raise ValueError(f"pd_joint_delta_pos action: expected {size} values, got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_joint_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    arm = np.clip(np.asarray(q, dtype=np.float64).reshape(-1) + scales.joint_delta_pos * action[:model.dof],
                  model.lower, model.upper)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[-1])) if grip else 0.0)
    return np.concatenate([arm, fingers])
