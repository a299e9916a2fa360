"""Commanded joint targets -> the task's normalised actions (the inverse of the bridge's mapping).

The policy node turns an action into joint targets (sim2real.robot.arm_model):
`pd_joint_delta_pos` targets q + scale x a, `pd_ee_delta_pos` moves the TCP by scale x a[:3]
(through IK) and both drive the fingers linearly from `finger_closed` (-1) to `finger_open`
(+1), the arm description's gripper.closed and gripper.open (ActionScales.for_arm; the scales
default to the Panda's). Logs of real demos hold the targets; inverting that mapping against the observed joint
positions gives back the action a policy with this contract would have sent:

    pd_joint_delta_pos: a[:n] = (target - q) / joint_delta_pos       (n arm joints)
    pd_ee_delta_pos:    a[:3] = (FK(target) - FK(q)) / ee_delta_pos    (TCP positions)
    gripper:            a[-1] = 2 (finger - finger_closed) / (finger_open - finger_closed) - 1
                        ("linear"), or binary (`binary_gripper_actions`, the default for logs)

The linear gripper inverse is exact only for targets nobody changed. A safety filter clamps the
policy's "close" (-0.01 m, a squeeze) to the finger's lower limit (0.0 m, read back as -0.6) and
ramps every change at its step limit (0.04 -> 0.035 -> 0.030 ..., read as 1.0, 0.8, 0.6 while
the demonstrator said -1). The binary reading takes the direction the fingers are sent in.

Teleoperated targets may lie further than one action's reach: values outside [-1, 1] are
clipped, and the number clipped is reported so a dataset that saturates is noticed.
"""

from __future__ import annotations

import numpy as np

from sim2real.robot.arm_model import ActionScales, RobotModel
from sim2real.robot.kinematics import KinematicChain
from sim2real.data.episode import DatasetError

CONTROL_MODES = ("pd_ee_delta_pos", "pd_joint_delta_pos")


def gripper_action(finger: np.ndarray, scales: ActionScales = ActionScales()) -> np.ndarray:
    """Finger joint target(s) -> the normalised gripper action (inverse of ActionScales.gripper_target)."""
    closed, opened = scales.finger_closed, scales.finger_open
    return 2.0 * (np.asarray(finger, dtype=np.float64) - closed) / (opened - closed) - 1.0


def binary_gripper_actions(fingers: np.ndarray, before: float, lower: float, upper: float,
                           motion_eps: float = 1e-3) -> np.ndarray:
    """Finger targets [T] -> gripper actions [T] in {-1, +1}: a target that moves down by more
    than `motion_eps`, or sits within it of the closed limit `lower`, is -1 (closing or closed,
    also when the object blocks the fingers); one that moves up or sits at `upper` is +1; a target
    that stays in between keeps the last reading. `before` is where the fingers were (or were
    sent) before the first target: a first target below it is closing.
    """
    fingers = np.asarray(fingers, dtype=np.float64).reshape(-1)
    out = np.empty(fingers.size)
    previous = float(before)
    state = -1.0 if previous < 0.5 * (lower + upper) else 1.0
    for k, f in enumerate(fingers):
        if f < previous - motion_eps or f <= lower + motion_eps:
            state = -1.0
        elif f > previous + motion_eps or f >= upper - motion_eps:
            state = 1.0
        out[k] = state
        previous = f
    return out


def targets_to_actions(control_mode: str, qpos: np.ndarray, arm_targets: np.ndarray, finger_targets: np.ndarray,
                       model: KinematicChain | None = None, scales: ActionScales = ActionScales()) -> np.ndarray:
    """Unclipped task actions [T, A] from arm targets [T, n] and finger targets [T] at joint positions
    qpos [T, >=n] (n arm joints: the Panda's 7, the SO-100's 5).

    Args:
        control_mode: "pd_ee_delta_pos" or "pd_joint_delta_pos".
        qpos: the observed joint positions each action was taken from (arm first).
        model: the arm's kinematics (pd_ee_delta_pos only; default the Panda's URDF).
        scales: the arm's action scales (default: the Panda's; ActionScales.for_arm for another arm).
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    arm_targets = np.asarray(arm_targets, dtype=np.float64)
    dof = arm_targets.shape[1]  # the arm's joints; qpos carries them first
    if control_mode == "pd_joint_delta_pos":
        arm = (arm_targets - qpos[:, :dof]) / scales.joint_delta_pos
    elif control_mode == "pd_ee_delta_pos":
        model = model or RobotModel.from_urdf()
        tcp_now = np.stack([model.fk_matrix(q[:dof])[1] for q in qpos])
        tcp_target = np.stack([model.fk_matrix(t)[1] for t in arm_targets])
        arm = (tcp_target - tcp_now) / scales.ee_delta_pos
    else:
        raise DatasetError(f"control_mode {control_mode!r}: joint targets convert to one of {CONTROL_MODES}")
    return np.concatenate([arm, gripper_action(finger_targets, scales)[:, None]], axis=1)


def next_state_actions(control_mode: str, qpos: np.ndarray, dof: int, model: KinematicChain | None,
                       scales: ActionScales, gain: float, binary: tuple[float, float] | None) -> np.ndarray:
    """Unclipped actions [T, A] that take each next measured joint state qpos[k + 1] as the target
    from qpos[k] ([T+1, joints], arm first): demos recorded without commands (rosbag
    actions_from and LeRobot action_kind next_state).

    Args:
        dof: the arm's joints; the rest of qpos are gripper joints (their mean is the opening).
        gain: the share of a commanded step the arm's controller completes in one period; the
            arm actions are the measured motion divided by it.
        binary: (closed, open) limits for the binary gripper reading (binary_gripper_actions);
            None: the linear inverse of the action scaling.
    """
    fingers = qpos[:, dof:].mean(axis=1)
    raw = targets_to_actions(control_mode, qpos[:-1], qpos[1:, :dof], fingers[1:], model, scales)
    raw[:, :-1] /= gain
    if binary is not None:
        raw[:, -1] = binary_gripper_actions(fingers[1:], float(fingers[0]), *binary)
    return raw


def clip_actions(actions: np.ndarray) -> tuple[np.ndarray, int]:
    """Actions clipped to [-1, 1] (float32) and how many values were outside."""
    actions = np.asarray(actions, dtype=np.float64)
    outside = int(np.count_nonzero(np.abs(actions) > 1.0))
    return np.clip(actions, -1.0, 1.0).astype(np.float32), outside
