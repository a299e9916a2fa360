"""From normalised actions to joint position targets (ManiSkill's Panda controllers).

`pd_ee_delta_pos`: the TCP target is the current TCP position plus 0.1 m x action[:3];
inverse kinematics turns it into arm joint targets once per control step, which the joint
PD drives then track at the physics rate. ManiSkill's IK keeps the TCP's current
orientation; this one holds the orientation the TCP had at the episode's start (gripper
pointing down), so orientation error cannot accumulate. As in ManiSkill (CPU), a target
the IK cannot reach to within tolerance is not chased: the arm holds its current joint
positions for that step. Best-effort solutions near the workspace boundary jump across
the arm's singular stretch and fling whatever the gripper touches.

`pd_joint_delta_pos`: arm joint targets = current joint positions + 0.1 rad x action[:7].

In both modes the last action dim drives the gripper through the arm description's linear map
(the Panda's fingers: -1 -> -0.01, closed and still squeezing; +1 -> 0.04, open).

The joint drives are PD with a force limit (tasks.layout), stepped by `drive_command`.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.mujoco.index import SceneIndex


def drive_command(target: np.ndarray, q: np.ndarray, qdot: np.ndarray, kp: np.ndarray, kd: np.ndarray,
                  limit: np.ndarray, inertia: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """One physics step of force-limited PD drives, as PhysX runs ManiSkill's: (ctrl, saturated).

    An unsaturated drive stays a MuJoCo position actuator (kp on position, kd on velocity,
    the damping integrated implicitly). A drive whose implicit force would exceed its limit
    pushes with exactly the limit instead: its ctrl is placed limit/kp from q and the caller
    zeroes its damping gain for this step. Which drives saturate is predicted per joint from
    the implicit-damping force (kp e - kd qdot) / (1 + dt kd / I), I the joint's diagonal
    inertia, so the switch between the two regimes is continuous.
    """
    force = kp * (target - q) - kd * qdot
    implicit = force / (1.0 + dt * kd / inertia)
    saturated = np.abs(implicit) > limit
    ctrl = np.where(saturated, q + np.sign(implicit) * limit / kp, target)
    return ctrl, saturated


class DampedLeastSquaresIK:
    """Position + orientation IK of the TCP site over the 7 arm joints.

    Iterates dq = J^T (J J^T + lambda^2 I)^-1 e on a scratch MjData (the simulation state is
    never touched), clamping to joint limits, until the pose error (position in m and
    rotation in rad, one 6-vector, as ManiSkill's CLIK measures it) is below `tol`.

    Args:
        model: the scene model (its arm kinematics; any env copy will do).
        index: addresses of the arm joints and the TCP site.
        damping: lambda, keeps steps bounded near singularities.
        rot_weight: metres of position error one radian of orientation error is worth.
        iterations: most iterations per solve.
        tol: pose error to stop at (ManiSkill's: 1e-4).
        stall: give up when an iteration keeps more than this fraction of the error (an
            unreachable target; reachable ones converge much faster).
    """

    def __init__(self, model: mujoco.MjModel, index: SceneIndex, damping: float = 0.02, rot_weight: float = 0.5,
                 iterations: int = 50, tol: float = 1e-4, stall: float = 0.99) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.index = index
        self.damping = damping
        self.rot_weight = rot_weight
        self.iterations = iterations
        self.tol = tol
        self.stall = stall
        self._damping_eye = damping ** 2 * np.eye(6)
        self.low, self.high = model.jnt_range[index.arm_joint_ids].T.copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def solve(self, qpos: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray) -> np.ndarray | None:
        """Arm joint positions [7] that put the TCP at target_pos with orientation target_quat
        (w, x, y, z), or None when the iterates do not come within `tol` (they stall, typically
        against a joint limit or the workspace boundary, or run out of iterations).

        Args:
            qpos: the full current qpos of the scene (the start point).
        """
        idx, m, d = self.index, self.model, self.data
        d.qpos[:] = qpos
        q = qpos[idx.arm_qpos].copy()
        err = np.zeros(6)
        jac = np.zeros((6, len(q)))
        cur_quat, q_err, conj = np.zeros(4), np.zeros(4), np.zeros(4)
        previous = np.inf
        for _ in range(self.iterations):
            d.qpos[idx.arm_qpos] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err[:3] = target_pos - d.site_xpos[idx.tcp_site]
            mujoco.mju_mat2Quat(cur_quat, d.site_xmat[idx.tcp_site])
            mujoco.mju_negQuat(conj, cur_quat)
            mujoco.mju_mulQuat(q_err, target_quat, conj)
            mujoco.mju_quat2Vel(err[3:], q_err, 1.0)  # world-frame rotation vector
            norm = float(np.sqrt(err @ err))
            if norm < self.tol:
                return q
            if norm > self.stall * previous:
                return None
            previous = norm
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, idx.tcp_site)
            jac[:3] = self._jacp[:, idx.arm_dof]
            jac[3:] = self.rot_weight * self._jacr[:, idx.arm_dof]
            err[3:] *= self.rot_weight
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damping_eye, err)
            q = np.minimum(np.maximum(q + dq, self.low), self.high)
        return None


def tcp_quat(data: mujoco.MjData, site: int) -> np.ndarray:
    """The TCP's orientation (w, x, y, z)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, data.site_xmat[site])
    return quat
