"""`MujocoEnv`: the TaskEnv interface on MuJoCo, one CPU world per env.

Each env owns a copy of the task's compiled model (so its domain parameters, object sizes
and camera pose are its own) and an MjData; batching is a Python loop over envs, which is
what a CPU engine offers. Per-env numpy generators make resets reproducible: a reset with
`seed` reseeds env i with seed + i; a reset without one continues the streams.
"""

from __future__ import annotations

import numpy as np
import torch

from sim2real.robot.description import load_arm
from tasks import layout
from tasks.domain import DomainParams
from tasks.env import Obs, TaskEnv
from tasks.mujoco.index import SceneIndex
from tasks.mujoco.render import OffscreenRenderer
from tasks.mujoco.rules import RULES
from tasks.mujoco.scene import VIEWER_ONLY_GROUP, compile_scene
from tasks.mujoco.shifts import apply_shifts
from tasks.mujoco.world import World


class MujocoEnv(TaskEnv):
    """A batch of `num_envs` MuJoCo copies of one task (see TaskEnv for the arguments)."""

    backend = "mujoco"

    def __init__(self, task: str, num_envs: int = 1, domain: DomainParams | None = None, obs_mode: str = "state",
                 control_mode: str = "pd_ee_delta_pos", image_size: int = 64, episode_length: int = 0,
                 terminate_on_success: bool = False, device: torch.device | str = "cpu", arm: str = "panda") -> None:
        super().__init__(task, num_envs=num_envs, domain=domain, obs_mode=obs_mode, control_mode=control_mode,
                         image_size=image_size, episode_length=episode_length,
                         terminate_on_success=terminate_on_success, device=device, arm=arm)
        self.setup = layout.arm_setup(arm, task)
        self.description = load_arm(arm)
        nominal = compile_scene(task, arm)
        self.index = SceneIndex.build(nominal, task, self.description)
        self.rules = RULES[task]()
        self.worlds = [World(nominal, self.index, control_mode, self.description, self.setup)
                       for _ in range(num_envs)]
        self.rngs = [np.random.default_rng(i) for i in range(num_envs)]
        self._obs_renderer: OffscreenRenderer | None = None
        self._viewer: OffscreenRenderer | None = None
        if obs_mode == "rgb":  # fail at construction, not at the first observation, if GL is missing
            self._obs_renderer = OffscreenRenderer(nominal, image_size, image_size)

    # ---- TaskEnv -------------------------------------------------------------------------
    def _reset_envs(self, env_ids: torch.Tensor, seed: int | None) -> None:
        for i in env_ids.tolist():
            if seed is not None:
                self.rngs[i] = np.random.default_rng(seed + i)
            rng, world = self.rngs[i], self.worlds[i]
            world.half_sizes = apply_shifts(world.model, world.data, world.nominal, self.index, self.env_domains[i],
                                            rng, self.setup)
            init = np.asarray(self.setup.init_qpos)
            noise = rng.normal(0.0, layout.ROBOT_INIT_QPOS_NOISE, size=init.size)
            world.reset_robot(init + noise)
            self.rules.reset(world, rng, spawn_scale=self.env_domains[i].init_range_scale)
            world.finish_reset()

    def _apply_action(self, action: torch.Tensor) -> None:
        actions = action.detach().cpu().double().numpy()
        for world, a in zip(self.worlds, actions):
            world.apply_action(a)

    def _state(self) -> Obs:
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("qpos", "qvel", "tcp_pose", "obj_pose", "goal_pos")}
        idx = self.index
        for w in self.worlds:
            rows["qpos"].append(np.concatenate([w.data.qpos[idx.arm_qpos], w.data.qpos[idx.finger_qpos]]))
            rows["qvel"].append(np.concatenate([w.data.qvel[idx.arm_dof], w.data.qvel[idx.finger_dof]]))
            rows["tcp_pose"].append(w.tcp_pose())
            rows["obj_pose"].append(self.rules.obj_pose(w))
            rows["goal_pos"].append(self.rules.goal_pos(w))
        return {k: torch.as_tensor(np.stack(v), dtype=torch.float32, device=self.device) for k, v in rows.items()}

    def _evaluate(self) -> dict[str, torch.Tensor]:
        results = [self.rules.evaluate(w) for w in self.worlds]
        return {k: torch.tensor([r[k] for r in results], dtype=torch.bool, device=self.device) for k in results[0]}

    def _rgb(self) -> torch.Tensor:
        if self._obs_renderer is None:
            raise RuntimeError(f"{self.task}/mujoco: rgb observations need obs_mode='rgb' (this env has "
                               f"obs_mode={self.obs_mode!r})")
        frames = [self._obs_renderer.render(w.model, w.data, self.index.obs_camera) for w in self.worlds]
        return torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2).contiguous().to(self.device)

    def camera_frame(self, i: int = 0) -> np.ndarray:
        """Env i's observation camera as uint8 [image_size, image_size, 3] (envs made with
        obs_mode='rgb'), without observation noise: the simulated ROS 2 arm's camera."""
        if self._obs_renderer is None:
            raise RuntimeError(f"{self.task}/mujoco: camera frames need obs_mode='rgb'")
        return self._obs_renderer.render(self.worlds[i].model, self.worlds[i].data, self.index.obs_camera)

    def render(self) -> torch.Tensor:
        """The viewer camera (ManiSkill's render_camera pose) at RENDER_SIZE: uint8 [N, H, W, 3]."""
        if self._viewer is None:
            self._viewer = OffscreenRenderer(self.worlds[0].nominal, layout.RENDER_SIZE, layout.RENDER_SIZE,
                                             visible_groups=(0, 1, 2, VIEWER_ONLY_GROUP))
        frames = [self._viewer.render(w.model, w.data, self.index.render_camera) for w in self.worlds]
        return torch.as_tensor(np.stack(frames), device=self.device)

    def close(self) -> None:
        for renderer in (self._obs_renderer, self._viewer):
            if renderer is not None:
                renderer.close()
        self._obs_renderer = self._viewer = None
