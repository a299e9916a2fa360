"""ManiSkill's SO-100 agent made the task layer's SO-100 (tasks.layout.ARM_SETUPS["so100"]).

ManiSkill's table scene turns the SO-100 by 90 deg about z, starts its jaw half closed and drives
the jaw like the Panda's fingers; its pd_joint_delta_pos takes a delta for the jaw too. The
MuJoCo backend (tasks/mujoco) builds the arm from the same URDF but places it by its ArmSetup and
reads it through its description (configs/arm/so100.yaml). These helpers give ManiSkill's agent
the same placement, jaw drive, TCP and gripper command, so a task means the same in both engines:

- `configure_agent`: the jaw drive's force limit from the ArmSetup (ManiSkill's 100 N m on a
  revolute jaw crushes a 25 mm cube with over 1 kN), and a check that ManiSkill's delta limits
  are the description's joint_delta and the setup's gripper_step;
- `place_arm`: at each episode start, after the table scene's own placement, the base at
  base_pos with the task frame's axes, the arm at init_qpos + noise, the jaw open;
- `tcp_pose`: the description's TCP (tcp_link moved by tcp_offset), not ManiSkill's jaw-tip
  midpoint, which moves as the jaw opens;
- `JawCommand`: the task action's absolute gripper command as the jaw delta ManiSkill takes,
  the way tasks.mujoco.world.World.gripper_targets moves the MuJoCo jaw;
- `sim_config`: finer PhysX steps than ManiSkill's default, without which the jaw loses its grasp.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sapien
import torch
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import SceneConfig, SimConfig

from sim2real.robot.description import ArmDescription
from tasks import layout

# At ManiSkill's 100 Hz and 15 position iterations the jaw, saturated at 3 N m, sank 8 mm into a
# grasped 25 mm cube; PhysX's depenetration then spun the cube (14 rad/s) and its friction on the
# jaws dragged the arm at 0.6 rad/s under zero actions, so carried cubes wandered off. MuJoCo's
# 2 ms step (tasks/mujoco/scene.py TIMESTEP) and 50 iterations hold the grasp: the scripted pick
# (16 episodes, seed 0) ended in success in 0 of 16 at 100 Hz, 16 of 16 at these settings (500 Hz
# with 15 iterations: 5 of 16, the arm still creeping at the goal; 100 Hz with 100 iterations: 6).
SIM_FREQ = 500
SOLVER_POSITION_ITERATIONS = 50


def sim_config() -> SimConfig:
    """The PhysX settings for this arm's scenes (ManiSkill's defaults otherwise)."""
    return SimConfig(sim_freq=SIM_FREQ, control_freq=int(layout.CONTROL_FREQ),
                     scene_config=SceneConfig(solver_position_iterations=SOLVER_POSITION_ITERATIONS))


def configure_agent(agent: Any, setup: layout.ArmSetup, arm: ArmDescription) -> None:
    """Set the gripper drives' force limit to setup.gripper_force_limit on a freshly loaded agent.

    The limit goes into the controller's config, not only onto the joints: the backend's domain
    shifts call `set_drive_property()` at every reset, which rewrites every drive from that config.
    """
    controller = agent.controller
    if hasattr(controller, "controllers"):
        raise ValueError(f"arm {arm.name!r}: ManiSkill's controller for {agent.control_mode} is a combined "
                         f"controller; tasks.maniskill_so100 expects one joint controller over arm and jaw")
    names = [joint.name for joint in controller.joints]
    expected = list(arm.joint_names + arm.gripper.joint_names)
    if names != expected:
        raise ValueError(f"arm {arm.name!r}: ManiSkill's {agent.control_mode} controller drives joints {names}, "
                         f"expected the description's {expected} ({arm.source})")
    config = controller.config
    if not config.use_delta or config.use_target:
        raise ValueError(f"arm {arm.name!r}: ManiSkill's {agent.control_mode} controller must add its action to "
                         f"the joints' positions (use_delta=True, use_target=False), as the task's "
                         f"pd_joint_delta_pos does; found use_delta={config.use_delta}, use_target={config.use_target}")
    _check_delta_limits(config, arm, setup)
    limits = np.broadcast_to(np.asarray(config.force_limit, dtype=np.float64), len(names)).copy()
    limits[len(arm.joint_names):] = setup.gripper_force_limit
    config.force_limit = limits.tolist()
    controller.set_drive_property()


def _check_delta_limits(config: Any, arm: ArmDescription, setup: layout.ArmSetup) -> None:
    """ManiSkill's normalised delta action must scale like the task's: joint_delta per arm joint
    (configs/arm/<arm>.yaml control.joint_delta), gripper_step for the jaw (tasks.layout)."""
    n = arm.dof
    upper = np.broadcast_to(np.asarray(config.upper, dtype=np.float64), n + len(arm.gripper.joint_names))
    if not np.allclose(upper[:n], arm.control.joint_delta) or not np.allclose(upper[n:], setup.gripper_step):
        raise ValueError(f"arm {arm.name!r}: ManiSkill's pd_joint_delta_pos limits are {upper.tolist()}; expected "
                         f"control.joint_delta={arm.control.joint_delta} ({arm.source}) per arm joint and "
                         f"gripper_step={setup.gripper_step} (tasks.layout.ARM_SETUPS) for the jaw")


def place_arm(env: Any, env_idx: torch.Tensor, setup: layout.ArmSetup, arm: ArmDescription) -> None:
    """Base at setup.base_pos (no rotation), arm at init_qpos + N(0, ROBOT_INIT_QPOS_NOISE), gripper open.

    Runs after ManiSkill's TableSceneBuilder.initialize, whose placement it replaces; the noise comes
    from the env's episode generator, so a seeded reset is reproducible.
    """
    b = len(env_idx)
    noise = env._episode_rng.normal(0.0, layout.ROBOT_INIT_QPOS_NOISE, (b, arm.dof))
    qpos = np.concatenate([np.asarray(setup.init_qpos) + noise,
                           np.full((b, len(arm.gripper.joint_names)), arm.gripper.open)], axis=1)
    env.agent.reset(torch.as_tensor(qpos, dtype=torch.float32, device=env.device))
    env.agent.robot.set_pose(sapien.Pose(p=list(setup.base_pos)))


def tcp_pose(robot: Any, arm: ArmDescription) -> torch.Tensor:
    """The description's TCP in the task frame: position + quaternion (w, x, y, z) [N, 7]."""
    pose = robot.links_map[arm.tcp_link].pose
    if arm.tcp_offset.any():
        pose = pose * Pose.create_from_pq(p=torch.tensor(arm.tcp_offset, dtype=torch.float32,
                                                            device=pose.raw_pose.device))
    return pose.raw_pose


class JawCommand:
    """Turns the task action's gripper command a in [-1 closed, +1 open] into ManiSkill's jaw delta.

    The command names a jaw position through the description's linear map (Gripper.joint_targets);
    ManiSkill's pd_joint_delta_pos moves the jaw target from where the jaw stands by the normalised
    action times `step`. So the action is (position - jaw) / step, clipped to [-1, 1]: the target
    heads for the commanded position by at most `step` per control step, as in MuJoCo.

    Args:
        arm: the description (its gripper's map; one jaw joint).
        step: the jaw's largest target change per step (ArmSetup.gripper_step, rad).
    """

    def __init__(self, arm: ArmDescription, step: float) -> None:
        if len(arm.gripper.joint_names) != 1:
            raise ValueError(f"arm {arm.name!r}: JawCommand drives one jaw joint; gripper.joints is "
                             f"{list(arm.gripper.joint_names)} ({arm.source})")
        self.closed = float(arm.gripper.joint_targets(-1.0)[0])
        self.open = float(arm.gripper.joint_targets(1.0)[0])
        self.step = step

    def __call__(self, action: torch.Tensor, jaw_qpos: torch.Tensor) -> torch.Tensor:
        """`action` [N, A] with the command last, `jaw_qpos` [N]: the action with its last dim a jaw delta."""
        command = action[:, -1].clamp(-1.0, 1.0)
        goal = self.closed + (command + 1.0) / 2.0 * (self.open - self.closed)
        out = action.clone()
        out[:, -1] = ((goal - jaw_qpos.to(action)) / self.step).clamp(-1.0, 1.0)
        return out
