"""Backend `maniskill`: the four tasks in ManiSkill3 (SAPIEN/PhysX).

With CUDA, one ManiSkill env simulates all `num_envs` on the GPU (`physx_cuda`). On CPU
ManiSkill allows one env per scene, so `num_envs` CPU scenes are kept in this process and
stepped one after another (`physx_cpu`, rendered by `sapien_cpu`, which needs Mesa >= 25's
lavapipe Vulkan driver: see scripts/install.sh).

Domain shifts are applied to each scene at reset:
- friction_scale: every collision shape's static and dynamic friction (objects, table,
  ground, robot links and fingers), from the values the scene was built with;
- object_mass_scale: mass and inertia of the manipulated bodies (cubes; the drawer);
- joint_damping_scale: the arm joints' damping. In PhysX an articulation joint's only
  viscous damping is its drive's damping, so this multiplies the arm drive damping;
- controller_gain_scale: the drive stiffness and damping of every joint (arm and gripper;
  the SO-100's one controller drives both, so its gains are scaled joint by joint);
- object_size_scale: cube half sizes (the drawer's handle fin), by rebuilding the scene
  when the size changes;
- camera_pose_jitter: the observation camera's eye and look-at points, uniform per axis;
- init_range_scale: the spawn regions' x/y half ranges, through each env's `spawn_scale`
  (read by its episode sampler, so no rebuild is needed).
On `physx_cuda` PhysX fixes materials and masses once the GPU simulation starts, so a
domain that changes them per env and episode is refused there (see `_check_gpu_domain`);
one fixed init_range_scale for every env works there.

Arms: `arm` is a ManiSkill agent uid and a description (configs/arm/<arm>.yaml) alike. The TCP
observed is the description's (tcp_link moved by tcp_offset); an arm whose jaw target moves by a
bounded step (ArmSetup.gripper_step: the SO-100) takes the action's absolute gripper command
converted to ManiSkill's jaw delta (tasks.maniskill_so100.JawCommand). The SO-100's scenes step
PhysX at 500 Hz with 50 solver iterations (tasks.maniskill_so100.sim_config: at ManiSkill's 100 Hz
its jaw loses grasped cubes).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import sapien
import torch
from mani_skill.utils import sapien_utils

import tasks.maniskill_cubes  # noqa: F401  (registers the Sim2Real* cube envs)
from sim2real.robot.description import load_arm
from tasks import layout
from tasks.domain import DomainParams
from tasks.env import Obs, TaskEnv
from tasks.maniskill_so100 import JawCommand, tcp_pose

ENV_IDS = {
    "push_cube": "Sim2RealPushCube-v1",
    "pick_cube": "Sim2RealPickCube-v1",
    "stack_cube": "Sim2RealStackCube-v1",
    "open_drawer": "Sim2RealOpenDrawer-v1",
}
# The ManiSkill kwarg that scales each task's manipulated object.
SCALE_KWARG = {"push_cube": "object_scale", "pick_cube": "object_scale", "stack_cube": "object_scale",
               "open_drawer": "handle_scale"}
PHYSICAL_FIELDS = ("friction_scale", "object_mass_scale", "joint_damping_scale", "controller_gain_scale",
                   "object_size_scale", "camera_pose_jitter")


class ManiSkillEnv(TaskEnv):
    """ManiSkill3 scenes behind the `TaskEnv` interface.

    Args:
        sim_backend: "auto" (physx_cuda when CUDA is available, else physx_cpu), or either.
        render_backend: "auto" ("sapien_cpu" on CPU, "gpu" with CUDA), or a ManiSkill name.
        arm: the robot; tasks.layout.ARM_SETUPS says which tasks it has.
        Others: see TaskEnv.
    """

    backend = "maniskill"

    def __init__(self, task: str, num_envs: int = 1, domain: DomainParams | None = None, obs_mode: str = "state",
                 sim_backend: str = "auto", render_backend: str = "auto", arm: str = "panda", **kwargs: Any) -> None:
        self.setup = layout.arm_setup(arm, task)  # an arm without this task fails before any engine work
        if sim_backend == "auto":
            sim_backend = "physx_cuda" if torch.cuda.is_available() else "physx_cpu"
        if render_backend == "auto":
            render_backend = "gpu" if sim_backend == "physx_cuda" else "sapien_cpu"
        device = "cuda" if sim_backend == "physx_cuda" else "cpu"
        super().__init__(task, num_envs=num_envs, domain=domain, obs_mode=obs_mode, device=device, arm=arm,
                         **kwargs)
        self.description = load_arm(arm)
        self._jaw = (JawCommand(self.description, self.setup.gripper_step)
                     if self.setup.gripper_step is not None else None)
        if task == "open_drawer":
            import tasks.maniskill_drawer  # noqa: F401  (registers Sim2RealOpenDrawer-v1)
        self.sim_backend = sim_backend
        gpu = sim_backend == "physx_cuda"
        if gpu:
            self._check_gpu_domain()
        self._make_kwargs = dict(
            obs_mode="rgb" if obs_mode == "rgb" else "none", control_mode=self.control_mode, robot_uids=arm,
            sim_backend=sim_backend, render_backend=render_backend, render_mode="rgb_array",
            sensor_configs=dict(width=self.image_size, height=self.image_size),
            human_render_camera_configs=dict(width=layout.RENDER_SIZE, height=layout.RENDER_SIZE))
        # One scene per env on CPU; one batched scene on the GPU.
        counts = [num_envs] if gpu else [1] * num_envs
        self._scales = [self.env_domains[0].object_size_scale if gpu else self.env_domains[i].object_size_scale
                        for i in range(len(counts))]
        self._envs = [gym.make(ENV_IDS[task], num_envs=n, **{SCALE_KWARG[task]: s},
                               spawn_scale=self.env_domains[i].init_range_scale, **self._make_kwargs).unwrapped
                      for i, (n, s) in enumerate(zip(counts, self._scales))]
        self._nominal: list[dict[str, Any]] = [{} for _ in self._envs]
        self._info: list[dict[str, torch.Tensor]] = [{} for _ in self._envs]
        self._obs: list[dict[str, Any]] = [{} for _ in self._envs]

    # ---- TaskEnv ---------------------------------------------------------------------------
    def _reset_envs(self, env_ids: torch.Tensor, seed: int | None) -> None:
        if self.sim_backend == "physx_cuda":
            env = self._envs[0]
            env.spawn_scale = self.env_domains[0].init_range_scale
            options = {} if len(env_ids) == self.num_envs else {"env_idx": env_ids}
            self._obs[0], self._info[0] = env.reset(seed=seed, options=options)
            return
        for i in env_ids.tolist():
            env, d = self._envs[i], self.env_domains[i]
            rebuild = d.object_size_scale != self._scales[i]
            if rebuild:
                setattr(env, SCALE_KWARG[self.task], d.object_size_scale)
                self._scales[i] = d.object_size_scale
                self._nominal[i] = {}
            env.spawn_scale = d.init_range_scale
            env.reset(seed=None if seed is None else seed + i, options={"reconfigure": rebuild})
            self._apply_domain(i, d)
            # Observe after the shifts: the camera may have moved.
            self._obs[i] = env.get_obs() if self.obs_mode == "rgb" else {}
            self._info[i] = env.get_info()

    def _apply_action(self, action: torch.Tensor) -> None:
        if self.sim_backend == "physx_cuda":
            self._obs[0], _, _, _, self._info[0] = self._envs[0].step(self._engine_action(self._envs[0], action))
            return
        for i, env in enumerate(self._envs):
            self._obs[i], _, _, _, self._info[i] = env.step(self._engine_action(env, action[i:i + 1]))

    def _engine_action(self, env: Any, action: torch.Tensor) -> torch.Tensor:
        """The task action as ManiSkill's controller takes it: a jaw's command becomes its delta."""
        if self._jaw is None:
            return action
        return self._jaw(action, env.agent.robot.get_qpos()[:, -1])

    def _state(self) -> Obs:
        parts = [self._env_state(env) for env in self._envs]
        return {k: torch.cat([p[k] for p in parts]).to(self.device).float() for k in parts[0]}

    def _evaluate(self) -> dict[str, torch.Tensor]:
        keys = [k for k, v in self._info[0].items() if torch.is_tensor(v) and v.dim() >= 1 and k != "elapsed_steps"]
        return {k: torch.cat([info[k].reshape(-1) for info in self._info]).to(self.device) for k in keys}

    def _rgb(self) -> torch.Tensor:
        frames = [obs["sensor_data"]["base_camera"]["rgb"] for obs in self._obs]
        return torch.cat(frames).permute(0, 3, 1, 2).contiguous().to(self.device)

    def render(self) -> torch.Tensor:
        return torch.cat([env.render() for env in self._envs]).to(self.device)

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []

    # ---- state -----------------------------------------------------------------------------
    def _env_state(self, env: Any) -> Obs:
        robot = env.agent.robot
        state = {"qpos": robot.get_qpos(), "qvel": robot.get_qvel(), "tcp_pose": tcp_pose(robot, self.description)}
        if self.task == "push_cube":
            state.update(obj_pose=env.obj.pose.raw_pose, goal_pos=env.goal_region.pose.p)
        elif self.task == "pick_cube":
            state.update(obj_pose=env.cube.pose.raw_pose, goal_pos=env.goal_site.pose.p)
        elif self.task == "stack_cube":
            state.update(obj_pose=env.cubeA.pose.raw_pose, goal_pos=env.cubeB.pose.p)
        else:
            state.update(obj_pose=env.handle_pose.raw_pose, goal_pos=env.goal_handle_pos)
        return state

    # ---- domain shifts ---------------------------------------------------------------------
    def _objects(self, env: Any) -> list[Any]:
        """The manipulated bodies' physx components (what object_mass_scale scales)."""
        if self.task == "push_cube":
            actors = [env.obj]
        elif self.task == "pick_cube":
            actors = [env.cube]
        elif self.task == "stack_cube":
            actors = [env.cubeA, env.cubeB]
        else:
            return list(env.drawer_link._objs)
        return [obj.find_component_by_type(sapien.physx.PhysxRigidDynamicComponent)
                for actor in actors for obj in actor._objs]

    def _record_nominal(self, i: int) -> dict[str, Any]:
        """The as-built friction, masses and drive gains of scene i, the base every scale multiplies."""
        env = self._envs[i]
        shapes = []
        for entity in env.scene.sub_scenes[0].entities:
            for comp in entity.components:
                if isinstance(comp, sapien.physx.PhysxRigidBaseComponent):
                    for shape in comp.get_collision_shapes():
                        mat = shape.get_physical_material()
                        shapes.append((shape, mat.static_friction, mat.dynamic_friction, mat.restitution))
        bodies = [(c, c.get_mass(), c.get_inertia().copy()) for c in self._objects(env)]
        gains = {name: (c.config.stiffness, c.config.damping) for name, c in _controllers(env).items()}
        return {"shapes": shapes, "bodies": bodies, "gains": gains}

    def _apply_domain(self, i: int, d: DomainParams) -> None:
        env = self._envs[i]
        if not self._nominal[i]:
            self._nominal[i] = self._record_nominal(i)
        nominal = self._nominal[i]
        for shape, static, dynamic, restitution in nominal["shapes"]:
            shape.set_physical_material(sapien.physx.PhysxMaterial(
                static * d.friction_scale, dynamic * d.friction_scale, restitution))
        for comp, mass, inertia in nominal["bodies"]:
            comp.set_mass(mass * d.object_mass_scale)
            comp.set_inertia(inertia * d.object_mass_scale)
        arm_joints = set(self.description.joint_names)
        for name, ctrl in _controllers(env).items():
            stiffness, damping = nominal["gains"][name]
            ctrl.config.stiffness = _scaled(stiffness, d.controller_gain_scale)
            is_arm = [joint.name in arm_joints for joint in ctrl.joints]
            if all(is_arm) or not any(is_arm):
                damping_scale = d.controller_gain_scale * (d.joint_damping_scale if all(is_arm) else 1.0)
                ctrl.config.damping = _scaled(damping, damping_scale)
            else:  # one controller over arm and gripper joints (the SO-100's)
                scales = [d.controller_gain_scale * (d.joint_damping_scale if a else 1.0) for a in is_arm]
                ctrl.config.damping = [v * k for v, k in zip(np.broadcast_to(damping, len(is_arm)).tolist(), scales)]
            ctrl.set_drive_property()
        jitter = d.camera_pose_jitter
        offsets = (torch.rand(2, 3, generator=self.generator) * 2 - 1) * jitter
        eye = torch.tensor(self.setup.camera_eye) + offsets[0]
        target = torch.tensor(self.setup.camera_target) + offsets[1]
        pose = sapien_utils.look_at(eye.tolist(), target.tolist()).sp  # one sapien.Pose (CPU scene)
        env._sensors["base_camera"].camera.set_local_pose(pose)

    def _check_gpu_domain(self) -> None:
        """Refuse the shifts PhysX cannot change per env after the GPU simulation starts.

        init_range_scale is not among them: the batched scene's sampler applies one value to
        every env (a randomised domain, which would want one per env, is refused as a whole).
        """
        d = self.domain
        changed = [f for f in PHYSICAL_FIELDS if getattr(d, f) != getattr(DomainParams(), f)]
        if d.randomize:
            changed = list(PHYSICAL_FIELDS)
        if changed:
            raise NotImplementedError(
                f"maniskill on physx_cuda cannot apply domain field(s) {', '.join(changed)} per env at reset; "
                f"use sim_backend=physx_cpu for physical shifts (tensor shifts - latency and noise - work on both)")


def _controllers(env: Any) -> dict[str, Any]:
    """The agent's joint controllers by name: a combined controller's parts (the Panda's "arm"
    and "gripper"), or the one controller over every joint (the SO-100's)."""
    controller = env.agent.controller
    return dict(controller.controllers) if hasattr(controller, "controllers") else {"all": controller}


def _scaled(value: Any, scale: float) -> Any:
    """Scale a controller gain that ManiSkill stores as a float or a per-joint sequence."""
    if isinstance(value, (list, tuple)):
        return type(value)(v * scale for v in value)
    return value * scale
