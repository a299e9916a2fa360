"""ManiSkill3 `open_drawer`, built from boxes.

ManiSkill's own cabinet tasks load PartNet-Mobility meshes that must be downloaded; this
task builds the same idea from primitives so it runs offline and matches the MuJoCo
version through the shared numbers in `tasks.layout`:

- a fixed cabinet shell (top, two sides, back) standing on the table, its front open;
- one hollow drawer (bottom + four walls) on a prismatic joint that slides towards the
  robot (-x), range [0, DRAWER_TRAVEL], 0 = closed (drawer front flush with the shell's
  front), with joint damping;
- a vertical fin handle on the drawer front, protruding towards -x, that a top-down Panda
  gripper (fingers closing along y) grasps and pulls.

Cabinet frame: the articulation's root. Its origin lies on the table (z = 0) under the
centre of the closed drawer, axes parallel to the world's; each episode puts it at
x = CABINET_CENTER_X + U[-h, h], y = U[-h, h] (h = CABINET_SPAWN_HALF_RANGE * spawn_scale,
spawn_scale being the domain's init_range_scale).

The handle is a second collision box of the drawer link (no extra joint to go soft), so
`handle_link is drawer_link`. Its size scales with `handle_scale` (one value for every
env) or `handle_scales` (one per env; such envs get their own articulation each).

    env = gym.make("Sim2RealOpenDrawer-v1", obs_mode="state", control_mode="pd_ee_delta_pos",
                   sim_backend="physx_cpu", render_backend="sapien_cpu")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sapien
import sapien.physx as physx
import torch
from mani_skill.agents.robots import Panda
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.building.articulation_builder import ArticulationBuilder
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs import Articulation, Link, Pose
from mani_skill.utils.structs.types import SimConfig
from sapien.wrapper.articulation_builder import LinkBuilder

from tasks import layout
from tasks.drawer_geometry import (DRAWER_CENTER_Z, DRAWER_RGBA, HANDLE_RGBA, SHELL_RGBA, drawer_boxes,
                                   handle_half, handle_offset, shell_boxes)

ENV_ID = "Sim2RealOpenDrawer-v1"

# Reward weights: reach (<= 1) + grasp (1) + opening progress (<= 2) stays below SUCCESS_REWARD.
PROGRESS_WEIGHT = 2.0
SUCCESS_REWARD = 5.0


def _add_box(builder: LinkBuilder, centre: Sequence[float], half: Sequence[float], color: Sequence[float],
             material: physx.PhysxMaterial | None = None, density: float = 1000.0) -> None:
    """One box with matching collision and visual shapes."""
    pose = sapien.Pose(p=list(centre))
    builder.add_box_collision(pose=pose, half_size=list(half), material=material, density=density)
    builder.add_box_visual(pose=pose, half_size=list(half), material=sapien.render.RenderMaterial(base_color=color))


@register_env(ENV_ID, max_episode_steps=50)
class OpenDrawerEnv(BaseEnv):
    """Open a box-built drawer by its fin handle with the Panda.

    Success: the drawer is open at least DRAWER_SUCCESS_OPENING (90 % of its travel).
    Randomised per episode: the cabinet's xy position and the robot's rest pose noise.

    Args:
        robot_uids: only "panda".
        robot_init_qpos_noise: std of the Gaussian noise on the rest joint positions.
        handle_scale: scales every half extent of the handle, in every env.
        handle_scales: one scale per env (length num_envs); overrides `handle_scale`. Envs
            with different handles need separate articulations: given this, each env gets
            its own, merged into one batched view.
        Both scales are read at scene load (they are attributes of the same names), so a new
        value takes effect at the next reset with `options={"reconfigure": True}`.
        spawn_scale: multiplies the cabinet's x/y spawn half range; read at every episode
            start (the attribute of the same name), so a new value needs no reconfigure.
    """

    SUPPORTED_ROBOTS = ["panda"]
    agent: Panda

    def __init__(self, *args: Any, robot_uids: str = "panda",
                 robot_init_qpos_noise: float = layout.ROBOT_INIT_QPOS_NOISE,
                 handle_scale: float = 1.0, handle_scales: Sequence[float] | None = None,
                 spawn_scale: float = 1.0, **kwargs: Any) -> None:
        if not handle_scale > 0:
            raise ValueError(f"handle_scale={handle_scale}: must be > 0")
        if handle_scales is not None and not all(s > 0 for s in handle_scales):
            raise ValueError(f"handle_scales={list(handle_scales)}: every scale must be > 0")
        if not spawn_scale > 0:
            raise ValueError(f"spawn_scale={spawn_scale}: must be > 0")
        self.robot_init_qpos_noise = robot_init_qpos_noise
        self.handle_scale = float(handle_scale)
        self.handle_scales: list[float] | None = None if handle_scales is None else [float(s) for s in handle_scales]
        self.spawn_scale = float(spawn_scale)
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    # ---- configuration -------------------------------------------------------------------
    @property
    def _default_sim_config(self) -> SimConfig:
        return SimConfig(sim_freq=int(layout.SIM_FREQ), control_freq=int(layout.CONTROL_FREQ))

    @property
    def _default_sensor_configs(self) -> list[CameraConfig]:
        pose = sapien_utils.look_at(eye=list(layout.CAMERA_EYE), target=list(layout.CAMERA_TARGET))
        return [CameraConfig("base_camera", pose, 128, 128, layout.CAMERA_FOVY, layout.CAMERA_NEAR, layout.CAMERA_FAR)]

    @property
    def _default_human_render_camera_configs(self) -> CameraConfig:
        pose = sapien_utils.look_at(eye=list(layout.RENDER_EYE), target=list(layout.RENDER_TARGET))
        return CameraConfig("render_camera", pose, layout.RENDER_SIZE, layout.RENDER_SIZE, layout.RENDER_FOVY,
                            layout.CAMERA_NEAR, layout.CAMERA_FAR)

    # ---- scene ---------------------------------------------------------------------------
    def _load_agent(self, options: dict) -> None:
        super()._load_agent(options, sapien.Pose(p=list(layout.ROBOT_BASE_POS)))

    def _load_scene(self, options: dict) -> None:
        self.table_scene = TableSceneBuilder(self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()

        scales = self.handle_scales if self.handle_scales is not None else [self.handle_scale] * self.num_envs
        if len(scales) != self.num_envs:
            raise ValueError(f"handle_scales has {len(scales)} values for num_envs={self.num_envs}")
        if self.handle_scales is None:
            # One builder for every env: the cheap path.
            self.drawer = self._build_cabinet("cabinet", scales[0], scene_idxs=None)
        else:
            # Different handles are different link shapes, so each env gets its own
            # articulation (even where values repeat, so this path is the same for any
            # values); merging them in env order gives one batched view again.
            parts = [self._build_cabinet(f"cabinet-{i}", s, scene_idxs=[i]) for i, s in enumerate(scales)]
            self.drawer = Articulation.merge(parts, name="cabinet", merge_links=True)
        self.drawer_link: Link = self.drawer.links_map["drawer"]
        self.handle_link: Link = self.drawer_link
        self.handle_scale_per_env = torch.tensor(scales, dtype=torch.float32, device=self.device)
        # The handle centre in the drawer link frame, per env: the only scale-dependent part.
        self._handle_offset = torch.tensor([handle_offset(s) for s in scales], dtype=torch.float32,
                                           device=self.device)

    def _build_cabinet(self, name: str, scale: float, scene_idxs: list[int] | None) -> Articulation:
        """Build the cabinet (fixed root) with its drawer (prismatic child) in `scene_idxs`."""
        builder: ArticulationBuilder = self.scene.create_articulation_builder()
        if scene_idxs is not None:
            builder.set_scene_idxs(scene_idxs)
        builder.initial_pose = sapien.Pose(p=[layout.CABINET_CENTER_X, 0.0, 0.0])

        shell = builder.create_link_builder()
        shell.set_name("cabinet")
        for centre, half in shell_boxes():
            _add_box(shell, centre, half, SHELL_RGBA)

        # The drawer and its handle get their own material (a copy of the scene default),
        # so a friction shift applied to it does not leak to the robot or the table.
        default = physx.get_default_material()
        material = physx.PhysxMaterial(default.static_friction, default.dynamic_friction, default.restitution)
        boxes = drawer_boxes() + [(handle_offset(scale), handle_half(scale))]
        # One density for all boxes so the link weighs DRAWER_MASS whatever the handle size.
        volume = sum(8.0 * h[0] * h[1] * h[2] for _, h in boxes)
        density = layout.DRAWER_MASS / volume
        drawer = builder.create_link_builder(shell)
        drawer.set_name("drawer")
        for i, (centre, half) in enumerate(boxes):
            color = HANDLE_RGBA if i == len(boxes) - 1 else DRAWER_RGBA
            _add_box(drawer, centre, half, color, material=material, density=density)
        drawer.set_joint_name("drawer_slide")
        # A prismatic joint moves its child along the joint frame's +x. Turning that frame
        # half a turn about z (in parent and child alike) makes +q slide the drawer along
        # the world's -x, towards the robot, without rotating the drawer.
        flip = [0.0, 0.0, 0.0, 1.0]
        drawer.set_joint_properties(
            type="prismatic", limits=[[0.0, layout.DRAWER_TRAVEL]],
            pose_in_parent=sapien.Pose(p=[0.0, 0.0, DRAWER_CENTER_Z], q=flip),
            pose_in_child=sapien.Pose(p=[0.0, 0.0, 0.0], q=flip),
            friction=0.0, damping=layout.DRAWER_JOINT_DAMPING)
        return builder.build(name=name, fix_root_link=True)

    # ---- episodes ------------------------------------------------------------------------
    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        with torch.device(self.device):
            b = len(env_idx)
            self.table_scene.initialize(env_idx)
            half = layout.CABINET_SPAWN_HALF_RANGE * self.spawn_scale
            pos = torch.zeros((b, 3))
            pos[:, :2] = torch.rand((b, 2)) * 2 * half - half
            pos[:, 0] += layout.CABINET_CENTER_X
            self.drawer.set_pose(Pose.create_from_pq(pos))
            self.drawer.set_qpos(torch.zeros((b, 1)))
            self.drawer.set_qvel(torch.zeros((b, 1)))

    # ---- task state ----------------------------------------------------------------------
    @property
    def handle_pose(self) -> Pose:
        """World pose of the handle centre, batched [N]."""
        return self.drawer_link.pose * Pose.create_from_pq(self._handle_offset)

    @property
    def drawer_qpos(self) -> torch.Tensor:
        """How far the drawer is open, metres [N] (0 = closed)."""
        return self.drawer.qpos[:, 0]

    @property
    def goal_handle_pos(self) -> torch.Tensor:
        """Where the handle centre is when the opening equals DRAWER_SUCCESS_OPENING [N, 3]."""
        local = self._handle_offset.clone()
        local[:, 0] -= layout.DRAWER_SUCCESS_OPENING  # the drawer opens along the cabinet's -x
        local[:, 2] += DRAWER_CENTER_Z                # drawer link frame -> cabinet frame
        return (self.drawer.pose * Pose.create_from_pq(local)).p

    def evaluate(self) -> dict[str, torch.Tensor]:
        opening = self.drawer_qpos
        return {"success": opening >= layout.DRAWER_SUCCESS_OPENING, "opening": opening}

    def _get_obs_extra(self, info: dict) -> dict[str, torch.Tensor]:
        obs = {"tcp_pose": self.agent.tcp.pose.raw_pose, "goal_pos": self.goal_handle_pos}
        if "state" in self.obs_mode:
            obs.update(handle_pose=self.handle_pose.raw_pose, drawer_qpos=self.drawer_qpos)
        return obs

    # ---- rewards (for diagnosis) ---------------------------------------------------------
    def compute_dense_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        """Reach the handle (<= 1), hold it (1), open the drawer (<= 2); success gives 5."""
        dist = torch.linalg.norm(self.handle_pose.p - self.agent.tcp.pose.p, dim=1)
        reward = 1.0 - torch.tanh(5.0 * dist)
        reward = reward + self.agent.is_grasping(self.handle_link).float()
        progress = (info["opening"] / layout.DRAWER_SUCCESS_OPENING).clamp(0.0, 1.0)
        reward = reward + PROGRESS_WEIGHT * progress
        return torch.where(info["success"], torch.full_like(reward, SUCCESS_REWARD), reward)

    def compute_normalized_dense_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        return self.compute_dense_reward(obs=obs, action=action, info=info) / SUCCESS_REWARD
