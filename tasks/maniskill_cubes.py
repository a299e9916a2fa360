"""ManiSkill3 cube tasks with a scalable object size and spawn region.

ManiSkill's PushCube-v1, PickCube-v1 and StackCube-v1 fix the cube size when the scene
is built. `object_size_scale` is a domain shift, so these subclasses take `object_scale`
and build the cubes from `tasks.layout` at that scale; everything else (robot, table,
goals, success rules, cameras) is ManiSkill's own. Changing the scale needs a scene
rebuild (`reset(options={"reconfigure": True})`), which the `maniskill` backend does when
an env's sampled size changes.

`robot_uids` names the arm (a ManiSkill agent and configs/arm/<arm>.yaml alike). The task
geometry comes from its `tasks.layout.ArmSetup`. ManiSkill's table scene places the Panda
where the layout's Panda stands; any other arm (the SO-100, on pick_cube) is placed, driven and
observed as tasks.maniskill_so100 describes.

`spawn_scale` (the domain's init_range_scale) multiplies the x/y half range of the cube
and goal spawn regions about their centres; it is read at every episode start, so setting
the attribute between resets is enough.
"""

from __future__ import annotations

import math
from typing import Any

import sapien
import torch
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.envs.tasks.tabletop.pick_cube import PickCubeEnv
from mani_skill.envs.tasks.tabletop.push_cube import PushCubeEnv
from mani_skill.envs.tasks.tabletop.stack_cube import StackCubeEnv
from mani_skill.utils import common
from mani_skill.utils.building import actors
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import SimConfig
from transforms3d.euler import euler2quat

from sim2real.robot.description import ArmDescription, load_arm
from tasks import layout, maniskill_so100

# The arm ManiSkill's TableSceneBuilder places as tasks.layout does; other arms are placed here.
TABLE_SCENE_ARM = "panda"


class _ScaledCube:
    """Mixin: take `object_scale` and set the cube half size before ManiSkill builds the
    scene; take `spawn_scale`, the spawn regions' x/y scale the episode sampler reads;
    take `robot_uids`, the arm, refused here unless its ArmSetup has this task."""

    task = ""  # the tasks.spec name, for the arm's setup
    places_arm = False  # whether _initialize_episode places an arm other than TABLE_SCENE_ARM

    def __init__(self, *args: Any, object_scale: float = 1.0, spawn_scale: float = 1.0, robot_uids: str = "panda",
                 **kwargs: Any) -> None:
        self.arm_setup = layout.arm_setup(robot_uids, self.task)  # before ManiSkill loads anything
        self.description: ArmDescription | None = None
        if robot_uids != TABLE_SCENE_ARM:
            if not self.places_arm:
                raise NotImplementedError(f"{type(self).__name__}: arm {robot_uids!r} needs its own placement at "
                                          f"reset, which only the pick_cube env does")
            self.description = load_arm(robot_uids)
        self.object_scale = object_scale
        self.spawn_scale = spawn_scale  # set before ManiSkill's constructor runs its first reset
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    @property
    def _default_sim_config(self) -> SimConfig:
        if self.description is None:
            return super()._default_sim_config
        return maniskill_so100.sim_config()

    def _load_agent(self, options: dict) -> None:
        if self.description is None:
            super()._load_agent(options)
            return
        # ManiSkill's task loads every arm where the Panda stands; this one loads where it will stand.
        BaseEnv._load_agent(self, options, sapien.Pose(p=list(self.arm_setup.base_pos)))
        maniskill_so100.configure_agent(self.agent, self.arm_setup, self.description)

    def _load_scene(self, options: dict) -> None:
        # These tasks read cube_half_size when they build, place and evaluate the cube.
        self.cube_half_size = self.arm_setup.cube_half_size * self.object_scale
        super()._load_scene(options)


@register_env("Sim2RealPushCube-v1", max_episode_steps=50)
class PushCube(_ScaledCube, PushCubeEnv):
    """PushCube-v1 with the cube's half size = CUBE_HALF_SIZE * object_scale.

    PushCube-v1 hard-codes its spawn square, so its episode sampler is rewritten here
    with the square's half range from `tasks.layout` times spawn_scale (the same draws as
    ManiSkill's at spawn_scale 1); the goal stays PUSH_GOAL_OFFSET_X in front of the cube.
    """

    task = "push_cube"

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        with torch.device(self.device):
            b = len(env_idx)
            self.table_scene.initialize(env_idx)
            r = layout.CUBE_SPAWN_HALF_RANGE * self.spawn_scale
            xyz = torch.zeros((b, 3))
            xyz[..., :2] = torch.rand((b, 2)) * (2 * r) - r
            xyz[..., 2] = self.cube_half_size
            self.obj.set_pose(Pose.create_from_pq(p=xyz, q=[1, 0, 0, 0]))
            goal = xyz + torch.tensor([layout.PUSH_GOAL_OFFSET_X, 0.0, 0.0])
            goal[..., 2] = layout.PUSH_GOAL_Z
            self.goal_region.set_pose(Pose.create_from_pq(p=goal, q=euler2quat(0, math.pi / 2, 0)))


@register_env("Sim2RealPickCube-v1", max_episode_steps=50)
class PickCube(_ScaledCube, PickCubeEnv):
    """PickCube-v1 with the arm's ArmSetup geometry: the cube's half size = cube_half_size *
    object_scale; ManiSkill's sampler draws the cube and the goal xy from its
    `cube_spawn_half_size` square about (0, 0), set to cube_spawn_half_range * spawn_scale at
    every episode start; goal heights, success radius and cameras are the setup's too.
    """

    task = "pick_cube"
    places_arm = True

    def _load_scene(self, options: dict) -> None:
        # PickCubeEnv.__init__ took these from its per-robot table (pick_cube_cfgs.py: the SO-100's
        # spawn centre is where ManiSkill turns and places it); the goal sphere and the cameras are
        # built from them after this.
        s = self.arm_setup
        self.goal_thresh = s.pick_goal_thresh
        self.max_goal_height = s.pick_max_goal_height
        self.cube_spawn_center = (0.0, 0.0)
        self.sensor_cam_eye_pos, self.sensor_cam_target_pos = list(s.camera_eye), list(s.camera_target)
        self.human_cam_eye_pos, self.human_cam_target_pos = list(s.render_eye), list(s.render_target)
        super()._load_scene(options)

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        self.cube_spawn_half_size = self.arm_setup.cube_spawn_half_range * self.spawn_scale
        super()._initialize_episode(env_idx, options)
        if self.description is not None:
            maniskill_so100.place_arm(self, env_idx, self.arm_setup, self.description)


@register_env("Sim2RealStackCube-v1", max_episode_steps=50)
class StackCube(_ScaledCube, StackCubeEnv):
    """StackCube-v1 (Panda without wrist camera) with both cubes scaled by object_scale.

    StackCube-v1 hard-codes its cube size in scene building and episode sampling, so
    both are rewritten here from `tasks.layout`; `evaluate` is ManiSkill's.
    """

    task = "stack_cube"

    def _load_scene(self, options: dict) -> None:
        half = layout.CUBE_HALF_SIZE * self.object_scale
        self.cube_half_size = common.to_tensor([half] * 3, device=self.device)
        self.table_scene = TableSceneBuilder(env=self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()
        self.cubeA = actors.build_cube(self.scene, half_size=half, color=[1, 0, 0, 1], name="cubeA",
                                       initial_pose=sapien.Pose(p=[0, 0, 0.1]))
        self.cubeB = actors.build_cube(self.scene, half_size=half, color=[0, 1, 0, 1], name="cubeB",
                                       initial_pose=sapien.Pose(p=[1, 0, 0.1]))

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        with torch.device(self.device):
            b = len(env_idx)
            self.table_scene.initialize(env_idx)
            half = float(self.cube_half_size[0])
            r = layout.CUBE_SPAWN_HALF_RANGE * self.spawn_scale
            # Rejection sampling: redraw cube B until it clears cube A by the separation
            # (both cubes may be rotated, so the bound uses their half diagonals); after many
            # misses redraw A too, since in a small square some A positions leave B no room.
            min_sep = layout.STACK_MIN_SEPARATION * self.object_scale
            a_xy = torch.rand((b, 2)) * 2 * r - r
            b_xy = torch.rand((b, 2)) * 2 * r - r
            close = torch.linalg.norm(a_xy - b_xy, dim=1) < min_sep
            redraws = 0
            while close.any():
                redraws += 1
                if redraws > layout.STACK_SPAWN_MAX_TRIES:
                    raise ValueError(
                        f"stack_cube: domain.init_range_scale={self.spawn_scale} is too small: no two cube "
                        f"positions {min_sep:.4f} m apart found in the +-{r:.4f} m spawn square after "
                        f"{layout.STACK_SPAWN_MAX_TRIES} draws")
                n = int(close.sum())
                if redraws > layout.STACK_SPAWN_B_ONLY_TRIES:
                    a_xy[close] = torch.rand((n, 2)) * 2 * r - r
                b_xy[close] = torch.rand((n, 2)) * 2 * r - r
                close = torch.linalg.norm(a_xy - b_xy, dim=1) < min_sep
            for actor, xy in ((self.cubeA, a_xy), (self.cubeB, b_xy)):
                p = torch.cat([xy, torch.full((b, 1), half)], dim=1)
                yaw = torch.rand(b) * 2 * torch.pi
                q = torch.stack([torch.cos(yaw / 2), torch.zeros(b), torch.zeros(b), torch.sin(yaw / 2)], dim=1)
                actor.set_pose(Pose.create_from_pq(p=p, q=q))
