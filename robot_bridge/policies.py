"""What the policy node runs: a checkpoint's planning policy, the task's scripted expert (target
demonstrations recorded through the bridge), or a scripted reach for bring-up.

A policy maps the contract's named features (no batch dimension) to one action [A] in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from sim2real.robot.arm_model import ActionScales
from sim2real.config import PlannerConfig
from sim2real.contract import Contract, Feature


class Policy(Protocol):
    """What the node runs: named features (no batch dim) -> one action [A] in [-1, 1]."""

    contract: Contract

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...

    def reset(self) -> None: ...


class CheckpointPolicy:
    """A checkpoint's PlanningPolicy (MPPI over the world model), one env, on `device`."""

    def __init__(self, path: str, planner: PlannerConfig, device: str = "cpu") -> None:
        import torch

        from sim2real.inference import load_policy

        self._torch = torch
        self._policy = load_policy(path, planner, device)
        self.contract = self._policy.contract

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = {k: self._torch.as_tensor(v).unsqueeze(0) for k, v in obs.items()}
        return self._policy.act(batch)[0].detach().cpu().double().numpy()

    def reset(self) -> None:
        self._policy.reset()

    def warm_up(self, steps: int = 3) -> None:
        """Run the planner on zero observations so the first real tick is not the slow first call."""
        zeros = {n: np.zeros(f.shape, dtype=np.uint8 if f.kind == "rgb" else np.float32)
                 for n, f in self.contract.features.items()}
        for _ in range(steps):
            self.act(zeros)
        self.reset()


class ReachPolicy:
    """Scripted pd_ee_delta_pos reach: move the TCP to `target` (task frame), gripper open."""

    contract = Contract(features={"qpos": Feature((9,)), "qvel": Feature((9,)), "tcp_pose": Feature((7,))},
                        action_dim=4, control_mode="pd_ee_delta_pos", control_freq=20.0)

    def __init__(self, target: Sequence[float], scales: ActionScales = ActionScales()) -> None:
        self.target = np.asarray(target, dtype=np.float64)
        self.scale = scales.ee_delta_pos

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        delta = np.clip((self.target - obs["tcp_pose"][:3]) / self.scale, -1.0, 1.0)
        return np.concatenate([delta, [1.0]])

    def reset(self) -> None:
        pass


class ExpertPolicy:
    """The task's scripted expert (tasks.experts) acting on what the bridge observes.

    The expert reads tcp_pose, obj_pose and goal_pos in the task frame: the node's observation of
    the task's `state` contract has exactly those, so the same expert that writes the simulated
    demos drives the arm over ROS 2 (e.g. to record demonstrations on the "real" arm).

    Args:
        task: a task with a scripted expert (push_cube, pick_cube, stack_cube, open_drawer).
        noise_std: Gaussian noise on the expert's motion (diverse demonstrations).
        seed: seed of the noise stream (None: torch's default generator).
    """

    def __init__(self, task: str, noise_std: float = 0.0, seed: int | None = None, arm: str = "panda") -> None:
        import torch

        from tasks.experts import make_expert
        from tasks.spec import arm_shape, task_contract

        self._torch = torch
        self.task = task
        # The arm's first control mode: end-effector deltas where it has them, joint deltas otherwise.
        mode = arm_shape(arm).modes[0]
        self.contract = task_contract(task, "state", mode, arm=arm)
        self.state_keys = ("tcp_pose", "obj_pose", "goal_pos") + (("qpos",) if mode != "pd_ee_delta_pos" else ())
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.expert = make_expert(task, num_envs=1, noise_std=noise_std, generator=generator, control_mode=mode,
                                  arm=arm)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = {k: self._torch.as_tensor(np.asarray(obs[k], dtype=np.float32)).unsqueeze(0)
                 for k in self.state_keys}
        return self.expert.act(state)[0].double().numpy()

    def reset(self) -> None:
        self.expert.reset()


def make_policy(params: Any) -> Policy:
    """The policy the node's parameters ask for (`policy`, `checkpoint`, `planner`, `planner.*`,
    `device`; `expert_task` and `expert_noise_std` for `policy: expert`)."""
    if params.policy == "reach":
        return ReachPolicy(params.reach_target)
    import torch

    torch.set_num_threads(max(1, params.torch_threads))
    if params.policy == "expert":
        try:
            return ExpertPolicy(params.expert_task, params.expert_noise_std, arm=params.arm)
        except ValueError as exc:
            raise ValueError(f"parameter expert_task={params.expert_task!r}: {exc}") from None
    from sim2real.config import PlannerConfig, load_preset

    planner = load_preset("planner", params.planner, PlannerConfig)
    known = {f.name for f in dataclasses.fields(PlannerConfig)} - {"name"}
    unknown = sorted(set(params.planner_fields) - known)
    if unknown:
        raise ValueError(f"parameter planner.{unknown[0]}: not a planner field; expected planner.<one of "
                         f"{sorted(known)}>")
    policy = CheckpointPolicy(params.checkpoint, dataclasses.replace(planner, **params.planner_fields),
                              params.device)
    policy.warm_up()
    return policy
