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

Action scaling constants are copied from tasks.layout, because importing `tasks` pulls in
torch and Hydra; tests/test_kinematics.py checks that the two agree.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real.robot.kinematics import KinematicChain

ARM_JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = ("panda_finger_joint1", "panda_finger_joint2")
BASE_LINK = "panda_link0"
TCP_LINK = "panda_hand_tcp"


@dataclass(frozen=True)
class ActionScales:
    """How a normalised task action maps to targets (the values of tasks.layout).

    Args:
        ee_delta_pos: metres the TCP target moves per step for action +-1 (pd_ee_delta_pos).
        joint_delta_pos: radians each joint target moves per step for action +-1 (pd_joint_delta_pos).
        finger_open: finger joint target for gripper action +1.
        finger_closed: finger joint target for gripper action -1 (below the URDF's lower limit:
            the simulated drive keeps squeezing; the safety filter clamps it to the limit).
    """

    ee_delta_pos: float = 0.1
    joint_delta_pos: float = 0.1
    finger_open: float = 0.04
    finger_closed: float = -0.01

    def gripper_target(self, a: float) -> float:
        """Finger joint target for the normalised gripper action a in [-1, 1] (linear)."""
        return self.finger_closed + (a + 1.0) / 2.0 * (self.finger_open - self.finger_closed)


def panda_urdf_path() -> Path:
    """ManiSkill's panda_v2.urdf inside the installed mani_skill package (located, not imported,
    as tasks.mujoco.robot does: importing mani_skill takes seconds)."""
    spec = importlib.util.find_spec("mani_skill")
    if spec is None or spec.origin is None:
        raise ImportError("sim2real.robot.arm_model reads ManiSkill's panda_v2.urdf: install mani-skill==3.0.1 "
                          "or pass the URDF path to RobotModel.from_urdf")
    path = Path(spec.origin).parent / "assets" / "robots" / "panda" / "panda_v2.urdf"
    if not path.exists():
        raise FileNotFoundError(f"Panda URDF not found at {path}")
    return path


class RobotModel(KinematicChain):
    """The Panda's `KinematicChain` (sim2real.robot.kinematics): `from_urdf()` without arguments reads
    ManiSkill's panda_v2.urdf, base panda_link0 -> TCP panda_hand_tcp, with both finger joints."""

    @classmethod
    def from_urdf(cls, path: str | Path | None = None, base_link: str = BASE_LINK,
                  tip_link: str = TCP_LINK, gripper_joints: tuple[str, ...] = FINGER_JOINT_NAMES) -> RobotModel:
        """Parse the chain base_link -> tip_link of `path` (default: ManiSkill's panda_v2.urdf)."""
        return super().from_urdf(path if path is not None else panda_urdf_path(), base_link, tip_link,
                                 gripper_joints)


def ee_delta_action_to_joint_targets(model: RobotModel, q: np.ndarray, action: np.ndarray,
                                     ref_quat: np.ndarray | None = None, scales: ActionScales = ActionScales(),
                                     **ik_kwargs: object) -> np.ndarray:
    """A `pd_ee_delta_pos` action [4] -> arm joint targets [n] followed by one target per finger joint.

    As in the tasks: the action is clipped to [-1, 1]; the TCP target is the current TCP position
    plus scales.ee_delta_pos x action[:3]; the last dim drives every finger linearly between
    finger_closed (-1) and finger_open (+1).

    Args:
        q: the arm's current joint positions [n].
        ref_quat: orientation (w, x, y, z) to hold. The MuJoCo backend holds the TCP orientation of
            the episode's start: pass that to match it. None holds the current orientation
            (ManiSkill's behaviour).
    """
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    if action.shape != (4,):
        raise ValueError(f"pd_ee_delta_pos action: expected 4 values (dx, dy, dz, gripper), got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_ee_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if ref_quat is None:
        ref_quat = model.fk(q)[1]
    arm = model.ik_delta(q, scales.ee_delta_pos * action[:3], ref_quat, **ik_kwargs)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[3])))
    return np.concatenate([arm, fingers])


def joint_delta_action_to_joint_targets(model: RobotModel, q: np.ndarray, action: np.ndarray,
                                        scales: ActionScales = ActionScales()) -> np.ndarray:
    """A `pd_joint_delta_pos` action [n + 1] -> arm targets q + scale x action (within the URDF limits)
    followed by the finger targets, as the tasks map it."""
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    if action.shape != (model.dof + 1,):
        raise ValueError(f"pd_joint_delta_pos action: expected {model.dof + 1} values, got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_joint_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    arm = np.clip(np.asarray(q, dtype=np.float64).reshape(-1) + scales.joint_delta_pos * action[:-1],
                  model.lower, model.upper)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[-1])))
    return np.concatenate([arm, fingers])
