"""Joint position targets straight into a MuJoCo `World`, for the simulated ROS 2 arm.

`World.apply_action` turns a normalised task action into joint targets and simulates one whole
control period. A ROS controller (joint_trajectory_controller, forward_command_controller)
receives joint targets instead, and the simulated arm (robot_bridge.sim_robot) runs physics in
slices between the joint states it publishes. `step_joint_targets` runs the same force-limited
PD drives as `World.apply_action`, for any number of physics steps and with a target per step;
tests/test_sim_robot.py checks that both give the same motion.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.mujoco.control import drive_command
from tasks.mujoco.world import World


def step_joint_targets(world: World, targets: np.ndarray, substeps: int | None = None) -> None:
    """Track joint position targets for a number of physics steps (500 Hz), then update kinematics.

    Args:
        world: the env's world (its model carries the domain's drive gains).
        targets: [d] (the arm joints, then the gripper joints: 7 + 2 on the Panda) held for every
            step, or [substeps, d], one row per step (an interpolated trajectory). Arm targets are clipped to the joint ranges, as
            the task controllers keep them; finger targets go to the drives as given.
        substeps: physics steps to run; default: one per row of a 2-D `targets`, else one
            control period (`world.substeps`).
    """
    rows = np.asarray(targets, dtype=np.float64)
    if rows.ndim == 1:
        rows = np.broadcast_to(rows, (substeps or world.substeps, rows.size))
    elif substeps is not None and substeps != rows.shape[0]:
        raise ValueError(f"targets has {rows.shape[0]} rows but substeps={substeps}")
    drives_count, n = len(world.targets), world.n_arm
    if rows.shape[1] != drives_count or not np.all(np.isfinite(rows)):
        raise ValueError(f"joint targets: expected finite values of shape [{drives_count}] or [steps, {drives_count}], "
                         f"got shape {list(rows.shape)}")
    m, d = world.model, world.data
    drives, kp = world._drives, m.actuator_gainprm[world._drives, 0].copy()
    bias = m.actuator_biasprm[drives, 2].copy()  # -kd, as the domain shifts set it
    damping = m.actuator_biasprm[drives, 2]  # a view: zeroed where a drive saturates
    qpos, qvel = d.qpos[world._drive_qpos], d.qvel[world._drive_dof]  # views
    try:
        for row in rows:
            world.targets[:n] = np.clip(row[:n], world.arm_low, world.arm_high)
            world.targets[n:] = row[n:]
            ctrl, saturated = drive_command(world.targets, qpos, qvel, kp, -bias, world._force_limit,
                                            d.M[world._drive_mdiag], m.opt.timestep)
            d.ctrl[drives] = ctrl
            damping[:] = np.where(saturated, 0.0, bias)
            mujoco.mj_step(m, d)
    finally:
        damping[:] = bias
    mujoco.mj_forward(m, d)
