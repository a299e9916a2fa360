"""A scripted expert for joint-space control: the end-effector experts' waypoints through IK.

An arm without end-effector control (the SO-100: ManiSkill offers it joint-space controllers
only) cannot take the experts' TCP deltas. `JointSpaceExpert` asks the task's end-effector
expert where the TCP should go this step and turns that displacement into joint deltas with one
damped-least-squares step on the arm's description (its URDF chain):

- rows: the TCP position (3), and the tool axis that points most nearly up at the episode's
  start held where it was (its cross product with its start direction, 3 rows of rank 2). That
  keeps a 5-joint jaw pointing down while it moves; the roll about that axis is left free.
- weights: the last joint whose axis lies along the held axis (the SO-100's wrist roll) only
  spins the tool about it; unweighted, the least-norm step used it to shift the offset TCP
  sideways and, as the largest joint motion, it set the pace. It is weighted down.
- scale: the joint step is shrunk as a whole until no joint moves more than `joint_delta`
  (action 1), so the TCP still heads straight for the waypoint, only slower.
- a jaw (one fixed side, one moving side) cannot centre itself on an object the way two
  fingers do: with the gripper open the waypoint is moved `jaw_clearance` away from the moving
  jaw, so the fixed jaw comes down beside the object, not on its edge; closing then pushes the
  object against the fixed jaw, which puts it near the TCP; a jaw's grasp is not centred, so with
  the jaw closed the goal is moved by the object's offset from the TCP, and the object, not the
  TCP, is carried to it. That offset (the cube hangs up to 2.5 cm below the TCP) plus 5 mm
  sensor noise crossed the inner expert's 3 cm "dropped" distance while holding, and it let go;
  for a jaw the distance is `jaw_lost_distance`. An open command opens the jaw only to
  `open_command` (-0.36: the SO-100 jaw at -0.4 rad, 56 mm wide; its jaw moves at most 0.2 rad per
  step, and about 0.08 behind its drive: from fully open, closing took 20 steps).

The arm's base axes are the task frame's (tasks.layout.ArmSetup), so the description's base-frame
Jacobian is the task frame's.
"""

from __future__ import annotations

import numpy as np
import torch

from sim2real.robot.description import load_arm
from tasks import layout
from tasks.experts import Expert


class JointSpaceExpert:
    """Wraps an end-effector `Expert`; `act` returns [N, arm joints + 1] pd_joint_delta_pos actions.

    Args:
        inner: the task's end-effector expert (its phases and waypoints).
        arm: the arm's description name (configs/arm/<arm>.yaml).
        damping: DLS damping (metres-equivalent) against singular steps.
        axis_weight: metres of position error one radian of tool-axis tilt is worth.
    """

    def __init__(self, inner: Expert, arm: str, damping: float = 0.02, axis_weight: float = 0.2,
                 roll_weight: float = 0.05, jaw_clearance: float = 0.008, open_command: float = -0.36,
                 jaw_lost_distance: float = 0.05, offset_smoothing: float = 0.2) -> None:
        self.inner = inner
        self.arm = load_arm(arm)
        self.num_envs = inner.num_envs
        self.damping = damping
        self.axis_weight = axis_weight
        self.roll_weight = roll_weight
        self.jaw = self.arm.gripper.kind == "revolute_jaw"
        self.jaw_clearance = jaw_clearance if self.jaw else 0.0
        self.open_command = open_command if self.jaw else 1.0
        if self.jaw:
            inner.lost_distance = jaw_lost_distance
        self.n = self.arm.dof
        self.axis = np.zeros(self.num_envs, dtype=int)  # which tool axis is held, per env
        self.axis_ref = np.tile([0.0, 0.0, 1.0], (self.num_envs, 1))  # its start direction (task frame)
        self.weights = np.ones((self.num_envs, self.n))
        self.gripper_open = np.ones(self.num_envs, dtype=bool)  # the last command opened the gripper
        self.holding = np.zeros(self.num_envs, dtype=bool)  # closed at the step before too
        self.offset = np.zeros((self.num_envs, 3))  # the held object's offset from the TCP, averaged
        self.offset_smoothing = offset_smoothing
        self._fresh = np.ones(self.num_envs, dtype=bool)

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        self.inner.reset(env_mask)
        mask = slice(None) if env_mask is None else env_mask.cpu().numpy()
        self._fresh[mask] = True
        self.gripper_open[mask] = True
        self.holding[mask] = False

    def act(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions [N, n + 1]: joint deltas in units of control.joint_delta, then the gripper command."""
        qpos = state["qpos"].detach().double().cpu().numpy()[:, :self.n]
        rots = [self.arm.chain.fk_matrix(q)[0] for q in qpos]
        for i in np.flatnonzero(self._fresh):
            self._start(i, qpos[i], rots[i])
        ee = self.inner.act(self._aim(state, rots))
        out = np.zeros((self.num_envs, self.n + 1))
        for i in range(self.num_envs):
            displacement = ee[i, :3].double().numpy() * layout.EE_DELTA_POS_LIMIT
            out[i, :self.n] = self._joint_step(i, qpos[i], rots[i], displacement)
        grip = ee[:, -1].double().numpy()
        self.gripper_open = grip > 0
        out[:, -1] = np.where(self.gripper_open, self.open_command, grip)
        return torch.as_tensor(out, dtype=torch.float32)

    def _start(self, i: int, q: np.ndarray, rot: np.ndarray) -> None:
        """Env i's episode begins: hold the tool axis nearest vertical; weight down the joint spinning it."""
        self.axis[i] = int(np.argmax(np.abs(rot[2])))
        self.axis_ref[i] = rot[:, self.axis[i]]
        self.weights[i] = 1.0
        spins = np.abs(self.arm.jacobian(q)[3:].T @ self.axis_ref[i]) > 0.9
        if spins.any():
            self.weights[i, np.flatnonzero(spins)[-1]] = self.roll_weight
        self._fresh[i] = False

    def _aim(self, state: dict[str, torch.Tensor], rots: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The state the inner expert plans from: with an open jaw, the object moved `jaw_clearance`
        away from the moving jaw (against the TCP offset's direction across the held axis); with
        it closed, the goal moved by the object's offset from the TCP."""
        if not self.jaw or "obj_pose" not in state:
            return state
        shifted = state["obj_pose"].detach().clone().cpu()
        goal = state["goal_pos"].detach().clone().cpu()
        closed = torch.as_tensor(~self.gripper_open)
        offset = state["tcp_pose"][:, :3].detach().cpu().double().numpy() - shifted[:, :3].double().numpy()
        # Averaged while held: through ROS 2 both positions carry sensor noise (5 mm on the target
        # domain), and the raw offset shook the goal, and the arm, by as much.
        fresh = ~self.gripper_open & ~self.holding
        self.offset[fresh] = offset[fresh]
        self.offset[~self.gripper_open] += self.offset_smoothing * (offset - self.offset)[~self.gripper_open]
        self.holding = ~self.gripper_open
        goal[closed] += torch.as_tensor(self.offset[~self.gripper_open], dtype=goal.dtype)
        for i in np.flatnonzero(self.gripper_open):
            towards = rots[i] @ self.arm.tcp_offset
            towards -= (towards @ self.axis_ref[i]) * self.axis_ref[i]
            norm = np.linalg.norm(towards)
            if norm > 0:
                shifted[i, :3] -= torch.as_tensor(self.jaw_clearance * towards / norm, dtype=shifted.dtype)
        return {**state, "obj_pose": shifted, "goal_pos": goal}

    def _joint_step(self, i: int, q: np.ndarray, rot: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        jac = self.arm.jacobian(q)
        # Rotation vector taking the held axis back to its start direction.
        tilt = np.cross(rot[:, self.axis[i]], self.axis_ref[i])
        rows = np.vstack([jac[:3], self.axis_weight * jac[3:]])
        error = np.concatenate([displacement, self.axis_weight * tilt])
        w = self.weights[i]
        dq = w * (rows.T @ np.linalg.solve((rows * w) @ rows.T + self.damping ** 2 * np.eye(6), error))
        dq = np.clip(dq, self.arm.lower - q, self.arm.upper - q)
        delta = self.arm.control.joint_delta
        largest = np.abs(dq).max()
        if largest > delta:
            dq *= delta / largest
        return dq / delta
