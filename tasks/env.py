"""The one environment interface every backend implements.

`TaskEnv` is a batched Gymnasium-style environment: `reset()` returns `(obs, info)` and
`step(action)` returns `(obs, reward, terminated, truncated, info)`, every value a tensor
with `num_envs` as its leading dim; `obs` is a dict of the contract's named features
(state features float32, `rgb` uint8 [N, 3, H, W]); `info["success"]` is a bool [N].

What is the same for every engine lives here: the contract, time limits, the tensor-only
domain shifts (action latency, action and observation noise, per-env sampling of
randomised domains) and input checks. A backend implements the `_`-methods: reset some
envs, run one control period, report noise-free state, render, evaluate success.

Episodes never terminate by default: success is not an absorbing state, so learners see
`terminated=False` and bootstrap through it, and every episode ends by `truncated` at
`episode_length`. `terminate_on_success=True` sets `terminated` where the task is solved
(evaluation loops that stop early use it).

Rewards are the sparse success indicator, for diagnosis only: stage 1 never learns from them.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from sim2real.contract import Contract
from tasks.domain import ActionDelay, DomainParams
from tasks.spec import CONTROL_MODES, TaskSpec, task_contract, task_spec
from tasks.spec import episode_length as default_episode_length

Obs = dict[str, torch.Tensor]


class TaskEnv(abc.ABC):
    """A batch of `num_envs` copies of one task in one engine.

    Args:
        task: task name (see tasks.spec.TASKS).
        num_envs: number of parallel envs.
        domain: the world's shifts; with `domain.randomize` each env draws its own
            parameters from `domain.ranges` at every reset.
        obs_mode: "state" or "rgb".
        control_mode: "pd_ee_delta_pos" or "pd_joint_delta_pos".
        image_size: rgb observation side in pixels.
        episode_length: control steps per episode (0: the task's default).
        terminate_on_success: report `terminated` where the task is solved.
        device: where tensors live; backends on CPU engines use "cpu".
        arm: the robot (configs/arm/<arm>.yaml); its joints size qpos, qvel and joint actions.
    """

    backend: str = ""

    def __init__(self, task: str, num_envs: int = 1, domain: DomainParams | None = None,
                 obs_mode: str = "state", control_mode: str = "pd_ee_delta_pos", image_size: int = 64,
                 episode_length: int = 0, terminate_on_success: bool = False,
                 device: torch.device | str = "cpu", arm: str = "panda") -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}: expected >= 1")
        if control_mode not in CONTROL_MODES:
            raise ValueError(f"control_mode={control_mode!r}; expected one of {CONTROL_MODES}")
        self.spec: TaskSpec = task_spec(task)
        self.task = task
        self.num_envs = num_envs
        self.domain = domain if domain is not None else DomainParams()
        self.domain.validate()
        self.obs_mode = obs_mode
        self.control_mode = control_mode
        self.image_size = image_size
        self.arm = arm
        self.contract: Contract = task_contract(task, obs_mode, control_mode, image_size, arm)
        self.episode_length = episode_length or default_episode_length(task, arm)
        self.terminate_on_success = terminate_on_success
        self.device = torch.device(device)
        self.action_dim = self.contract.action_dim
        self.action_low = -torch.ones(self.action_dim, device=self.device)
        self.action_high = torch.ones(self.action_dim, device=self.device)

        self.generator = torch.Generator(device="cpu").manual_seed(0)
        self.env_domains: list[DomainParams] = self.domain.sample(num_envs, self.generator)
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        max_latency = (int(self.domain.ranges.action_latency_steps[1]) if self.domain.randomize
                       else self.domain.action_latency_steps)
        self._delay = ActionDelay(self.domain.action_latency_steps, num_envs, self.hold_action(),
                                  max_steps=max_latency)
        self._obs_std = torch.zeros(num_envs, 1, device=self.device)
        self._act_std = torch.zeros(num_envs, 1, device=self.device)
        self._sync_tensor_shifts(torch.ones(num_envs, dtype=torch.bool, device=self.device))

    # ---- the interface -------------------------------------------------------------------
    def hold_action(self) -> torch.Tensor:
        """The action that keeps the arm still with the gripper open (executed while a
        latency queue fills): zero motion and gripper +1."""
        hold = torch.zeros(self.action_dim, device=self.device)
        hold[-1] = 1.0
        return hold

    def reset(self, seed: int | None = None, env_mask: torch.Tensor | None = None) -> tuple[Obs, dict[str, Any]]:
        """Start new episodes in every env (or where env_mask [N] is True).

        `seed` makes the new initial states and the noise streams reproducible.
        """
        mask = self._mask(env_mask)
        if seed is not None:
            self.generator.manual_seed(seed)
        ids = mask.nonzero().flatten()
        if self.domain.randomize:
            draws = self.domain.sample(len(ids), self.generator)
            for j, i in enumerate(ids.tolist()):
                self.env_domains[i] = draws[j]
        self._sync_tensor_shifts(mask)
        self._reset_envs(ids, seed)
        self.elapsed_steps[mask] = 0
        self._delay.reset(mask)
        info = self._evaluate()
        info["elapsed_steps"] = self.elapsed_steps.clone()
        return self._observe(), info

    def step(self, action: torch.Tensor) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Run one control period with `action` [num_envs, action_dim] in [-1, 1]."""
        action = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"{self.task}/{self.backend}: action has shape {tuple(action.shape)}, expected "
                             f"[num_envs={self.num_envs}, action_dim={self.action_dim}] ({self.control_mode})")
        if not torch.isfinite(action).all():
            raise ValueError(f"{self.task}/{self.backend}: action contains NaN or inf")
        noisy = action + self._act_std * torch.randn(action.shape, generator=self.generator).to(self.device)
        executed = self._delay.step(noisy.clamp(-1.0, 1.0))
        self._apply_action(executed)
        self.elapsed_steps += 1
        info = self._evaluate()
        info["elapsed_steps"] = self.elapsed_steps.clone()
        success = info["success"]
        reward = success.float()
        terminated = success & self.terminate_on_success
        truncated = self.elapsed_steps >= self.episode_length
        return self._observe(), reward, terminated, truncated, info

    def privileged_obs(self) -> Obs:
        """Noise-free state features (every state feature, in any obs mode): for scripted experts."""
        return self._state()

    def render(self) -> torch.Tensor:
        """An RGB frame per env for videos: uint8 [N, H, W, 3]."""
        raise NotImplementedError(f"backend {self.backend!r} cannot render")

    def close(self) -> None:
        """Release the engine's resources."""

    # ---- for backends ----------------------------------------------------------------------
    @abc.abstractmethod
    def _reset_envs(self, env_ids: torch.Tensor, seed: int | None) -> None:
        """Sample new initial states for env_ids (LongTensor) and apply the physical
        domain parameters `self.env_domains[i]` to them."""

    @abc.abstractmethod
    def _apply_action(self, action: torch.Tensor) -> None:
        """Execute one control period of the (already delayed and noised) action [N, A]."""

    @abc.abstractmethod
    def _state(self) -> Obs:
        """Noise-free state features of every env: the keys and shapes of `state_features(task)`."""

    @abc.abstractmethod
    def _evaluate(self) -> dict[str, torch.Tensor]:
        """Task evaluation per env; at least "success" (bool [N])."""

    def _rgb(self) -> torch.Tensor:
        """The observation camera: uint8 [N, 3, image_size, image_size]."""
        raise NotImplementedError(f"backend {self.backend!r} has no rgb observations")

    # ---- internals -------------------------------------------------------------------------
    def _mask(self, env_mask: torch.Tensor | None) -> torch.Tensor:
        if env_mask is None:
            return torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        env_mask = torch.as_tensor(env_mask, dtype=torch.bool, device=self.device)
        if env_mask.shape != (self.num_envs,):
            raise ValueError(f"env_mask has shape {tuple(env_mask.shape)}, expected [{self.num_envs}]")
        return env_mask

    def _sync_tensor_shifts(self, mask: torch.Tensor) -> None:
        """Per-env latency and noise levels from env_domains, for the masked envs."""
        latency = torch.tensor([d.action_latency_steps for d in self.env_domains], dtype=torch.long)
        self._delay.set_steps(latency.to(self.device), mask)
        obs_std = torch.tensor([[d.obs_noise_std] for d in self.env_domains], device=self.device)
        act_std = torch.tensor([[d.action_noise_std] for d in self.env_domains], device=self.device)
        self._obs_std[mask] = obs_std[mask]
        self._act_std[mask] = act_std[mask]

    def _observe(self) -> Obs:
        state = self._state()
        obs: Obs = {}
        for name, feature in self.contract.features.items():
            if feature.kind == "rgb":
                x = self._rgb()
            else:
                x = state[name].float()
                x = x + self._obs_std * torch.randn(x.shape, generator=self.generator).to(self.device)
            if tuple(x.shape) != (self.num_envs, *feature.shape):
                raise RuntimeError(f"{self.task}/{self.backend} produced feature {name!r} with shape "
                                   f"{tuple(x.shape)}, contract says [{self.num_envs}, {feature.shape}]")
            obs[name] = x
        return obs

