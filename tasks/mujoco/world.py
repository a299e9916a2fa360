"""One env's MuJoCo world: its own model copy (its own domain parameters), data, and controllers.

`World` holds what is generic to every task: resetting the robot, executing one control
period of an action, reading the TCP, object poses and finger contact forces. The task
rules (tasks.mujoco.rules) decide where objects go and what counts as success.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np

from sim2real.robot.description import ArmDescription
from tasks import layout
from tasks.mujoco.control import DampedLeastSquaresIK, drive_command, tcp_quat
from tasks.mujoco.index import SceneIndex


def _as_slice(ids: np.ndarray) -> slice:
    """`ids` as a slice; they must be consecutive."""
    if not np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))):
        raise ValueError(f"expected consecutive ids, got {ids.tolist()}")
    return slice(int(ids[0]), int(ids[0]) + len(ids))


class World:
    """Model + data of one env.

    Args:
        nominal: the compiled nominal scene; copied, so domain shifts stay per env.
        index: addresses in that scene.
        control_mode: "pd_ee_delta_pos" or "pd_joint_delta_pos".
        arm: the arm's description (joint deltas, gripper mapping).
        setup: where the arm stands and the task geometry sized for it.
    """

    def __init__(self, nominal: mujoco.MjModel, index: SceneIndex, control_mode: str, arm: ArmDescription,
                 setup: layout.ArmSetup) -> None:
        self.nominal = nominal
        self.model = copy.copy(nominal)
        self.data = mujoco.MjData(self.model)
        self.index = index
        self.control_mode = control_mode
        self.arm = arm
        self.setup = setup
        self.n_arm = len(index.arm_qpos)
        self.ik = DampedLeastSquaresIK(self.model, index) if control_mode == "pd_ee_delta_pos" else None
        period = 1.0 / layout.CONTROL_FREQ
        self.substeps = int(round(period / self.model.opt.timestep))
        if abs(self.substeps * self.model.opt.timestep - period) > 1e-9:
            raise ValueError(f"timestep {self.model.opt.timestep} does not divide the control period {period}")
        self.arm_low, self.arm_high = self.model.jnt_range[index.arm_joint_ids].T.copy()
        # The 9 drives in one order: arm joints, then fingers. The robot is the scene's first
        # piece, so they are actuators, qpos and dofs 0-8; slices keep the per-step indexing cheap.
        self._drives = _as_slice(np.concatenate([index.arm_actuators, index.finger_actuators]))
        self._drive_qpos = _as_slice(np.concatenate([index.arm_qpos, index.finger_qpos]))
        self._drive_dof = _as_slice(np.concatenate([index.arm_dof, index.finger_dof]))
        dofs = np.arange(self.model.nv)[self._drive_dof]
        # Where each drive's diagonal inertia sits in MuJoCo's lower-triangular CSR M (row ends).
        self._drive_mdiag = self.model.M_rowadr[dofs] + self.model.M_rownnz[dofs] - 1
        self._force_limit = np.array([layout.ARM_FORCE_LIMIT] * self.n_arm
                                     + [setup.gripper_force_limit] * len(index.finger_qpos))
        self.targets = np.zeros(len(dofs))
        self.ref_quat = np.array([0.0, 1.0, 0.0, 0.0])  # gripper down; replaced at each reset
        self.half_sizes = np.full(len(index.cube_geoms), setup.cube_half_size)  # set by the domain shifts
        self.goal = np.zeros(3)

    # ---- reset ---------------------------------------------------------------------------
    def reset_robot(self, arm_qpos: np.ndarray) -> None:
        """Zero the state, put the arm at arm_qpos [n] with the gripper open, targets where it stands."""
        idx, d = self.index, self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[idx.arm_qpos] = arm_qpos
        d.qpos[idx.finger_qpos] = self.arm.gripper.open
        self.targets = np.concatenate([arm_qpos, [self.arm.gripper.open] * len(idx.finger_qpos)])
        d.ctrl[self._drives] = self.targets

    def finish_reset(self) -> None:
        """Recompute derived quantities after the state was written; remember the TCP orientation."""
        mujoco.mj_forward(self.model, self.data)
        self.ref_quat = tcp_quat(self.data, self.index.tcp_site)

    def set_cube(self, k: int, pos: np.ndarray, yaw: float) -> None:
        a = self.index.cube_qpos[k]
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        v = self.index.cube_dof[k]
        self.data.qvel[v:v + 6] = 0.0

    # ---- control -------------------------------------------------------------------------
    def apply_action(self, action: np.ndarray) -> None:
        """Set joint targets from a normalised action, then simulate one control period."""
        idx, d = self.index, self.data
        if self.ik is not None:
            target = d.site_xpos[idx.tcp_site] + layout.EE_DELTA_POS_LIMIT * action[:3]
            arm = self.ik.solve(d.qpos, target, self.ref_quat)
            if arm is None:  # unreachable: hold still, as ManiSkill does when its IK fails
                arm = d.qpos[idx.arm_qpos].copy()
        else:
            arm = np.clip(d.qpos[idx.arm_qpos] + self.arm.control.joint_delta * action[:self.n_arm],
                          self.arm_low, self.arm_high)
        self.targets[:self.n_arm] = arm
        self.targets[self.n_arm:] = self.gripper_targets(float(action[-1]))
        m = self.model
        kp = m.actuator_gainprm[self._drives, 0].copy()
        bias = m.actuator_biasprm[self._drives, 2].copy()  # -kd, as the domain shifts set it
        damping = m.actuator_biasprm[self._drives, 2]  # a view: zeroed where a drive saturates
        qpos, qvel = d.qpos[self._drive_qpos], d.qvel[self._drive_dof]  # views
        for _ in range(self.substeps):
            ctrl, saturated = drive_command(self.targets, qpos, qvel, kp, -bias, self._force_limit,
                                            d.M[self._drive_mdiag], m.opt.timestep)
            d.ctrl[self._drives] = ctrl
            # A saturated drive pushes with exactly its limit: no damping term for this step.
            damping[:] = np.where(saturated, 0.0, bias)
            mujoco.mj_step(m, d)
        damping[:] = bias
        # mj_step leaves positions-dependent quantities one substep old; observations need them now.
        mujoco.mj_forward(self.model, d)

    def gripper_targets(self, command: float) -> np.ndarray:
        """The gripper joints' targets for a command in [-1 closed, +1 open]. A jaw with a step
        limit (ManiSkill's SO-100 moves its jaw by at most 0.2 rad per step) moves towards the
        command's position by at most that much from where it stands."""
        goal = self.arm.gripper.joint_targets(command)
        if self.setup.gripper_step is None:
            return goal
        now = self.data.qpos[self.index.finger_qpos]
        return now + np.clip(goal - now, -self.setup.gripper_step, self.setup.gripper_step)

    # ---- readings ------------------------------------------------------------------------
    def tcp_pose(self) -> np.ndarray:
        """TCP position and orientation (w, x, y, z) [7]."""
        return np.concatenate([self.data.site_xpos[self.index.tcp_site], tcp_quat(self.data, self.index.tcp_site)])

    def cube_pose(self, k: int) -> np.ndarray:
        a = self.index.cube_qpos[k]
        return self.data.qpos[a:a + 7].copy()

    def cube_velocity(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Linear (world) and angular velocity of cube k."""
        v = self.index.cube_dof[k]
        return self.data.qvel[v:v + 3].copy(), self.data.qvel[v + 3:v + 6].copy()

    def geom_pose(self, geom: int) -> np.ndarray:
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.geom_xmat[geom])
        return np.concatenate([self.data.geom_xpos[geom], quat])

    def finger_forces(self, geom: int) -> np.ndarray:
        """Net contact force [2, 3] (world frame) that `geom` exerts on the left and right finger."""
        m, d, idx = self.model, self.data, self.index
        forces = np.zeros((2, 3))
        local = np.zeros(6)
        for i in range(d.ncon):
            c = d.contact[i]
            for side, body in enumerate(idx.finger_bodies):
                # The contact force acts along +normal on geom2, from geom1.
                if c.geom1 == geom and m.geom_bodyid[c.geom2] == body:
                    sign = 1.0
                elif c.geom2 == geom and m.geom_bodyid[c.geom1] == body:
                    sign = -1.0
                else:
                    continue
                mujoco.mj_contactForce(m, d, i, local)
                forces[side] += sign * (c.frame.reshape(3, 3).T @ local[:3])
        return forces

    def is_grasping(self, geom: int, min_force: float = 0.5, max_angle_deg: float = 85.0) -> bool:
        """ManiSkill's Panda.is_grasping: both fingers push on the object with at least `min_force`
        N, each within `max_angle_deg` of its opening direction."""
        forces = self.finger_forces(geom)
        for side, body in enumerate(self.index.finger_bodies):
            opening = self.data.xmat[body].reshape(3, 3)[:, 1] * (1.0 if side == 0 else -1.0)
            norm = np.linalg.norm(forces[side])
            if norm < min_force or np.dot(opening, forces[side]) < norm * np.cos(np.radians(max_angle_deg)):
                return False
        return True
