"""Simulated manipulation tasks behind one environment contract.

    env = tasks.make_env("pick_cube", backend="maniskill", num_envs=4, domain="target")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)  # tensors, num_envs first

Backends: `maniskill` (ManiSkill3/SAPIEN) and `mujoco` (MuJoCo through dm_control.mjcf).
Each is imported only when asked for, so using one does not require the other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.domain import DomainParams
    from tasks.env import TaskEnv
    from tasks.spec import TaskConfig

__all__ = ["BACKENDS", "TASKS", "DomainParams", "TaskConfig", "TaskEnv", "make_env", "task_contract",
           "task_spec"]
# The package's names load on first use: `tasks.layout` (the scene geometry, plain Python) is read
# by the ROS 2 data layer, which must not pull in torch, Hydra or a simulator to get it.
_LAZY = {"BACKENDS": "tasks.spec", "TASKS": "tasks.spec", "TaskConfig": "tasks.spec", "task_contract": "tasks.spec",
         "task_spec": "tasks.spec", "DomainParams": "tasks.domain", "TaskEnv": "tasks.env"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")


def make_env(task: str | TaskConfig, backend: str = "maniskill", num_envs: int = 1,
             domain: DomainParams | str | None = None, obs_mode: str | None = None, **kwargs: Any) -> TaskEnv:
    """Build `num_envs` parallel copies of `task` in `backend`.

    Args:
        task: a task name, or a `TaskConfig` (obs_mode, control_mode, image size, episode length).
        backend: "maniskill" or "mujoco".
        num_envs: parallel envs (many with ManiSkill on CUDA; a few on CPU).
        domain: a DomainParams, a named domain ("source", "target"), or None for source.
        obs_mode: "state" or "rgb"; overrides the TaskConfig's.
        kwargs: passed to the backend (e.g. control_mode, episode_length, arm, sim_backend).
    """
    from tasks.domain import DomainParams
    from tasks.spec import BACKENDS, TaskConfig, task_spec

    if isinstance(task, TaskConfig):
        kwargs = {"control_mode": task.mode, "image_size": task.image_size,
                  "episode_length": task.episode_length, "arm": task.arm, **kwargs}
        obs_mode = obs_mode or task.obs_mode
        task = task.name
    task_spec(task)  # unknown names fail here, with the list of tasks
    if isinstance(domain, str):
        from sim2real.config import load_preset
        domain = load_preset("domain", domain, DomainParams)
    obs_mode = obs_mode or "state"
    if backend == "maniskill":
        from tasks.maniskill import ManiSkillEnv
        return ManiSkillEnv(task, num_envs=num_envs, domain=domain, obs_mode=obs_mode, **kwargs)
    if backend == "mujoco":
        from tasks.mujoco import MujocoEnv
        return MujocoEnv(task, num_envs=num_envs, domain=domain, obs_mode=obs_mode, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
