"""Turn a batched rollout (num_envs first) into one `Episode` per env."""

from __future__ import annotations

from typing import Any

import torch

from sim2real.data.episode import Episode


class EpisodeRecorder:
    """Collects each env's transitions of a batched rollout and cuts them into `Episode`s.

    `start` begins new episodes where env_mask is True (with the reset observations),
    `step` records one transition of every env, `finish(i)` returns env i's episode.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.frames: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(num_envs)]
        self.actions: list[list[torch.Tensor]] = [[] for _ in range(num_envs)]
        self.rewards: list[list[torch.Tensor]] = [[] for _ in range(num_envs)]
        self.success: list[list[bool]] = [[] for _ in range(num_envs)]

    def start(self, obs: dict[str, torch.Tensor], success: torch.Tensor, env_mask: torch.Tensor) -> None:
        for i in env_mask.nonzero().flatten().tolist():
            self.frames[i] = [{k: v[i].cpu() for k, v in obs.items()}]
            self.actions[i], self.rewards[i], self.success[i] = [], [], [bool(success[i])]

    def step(self, action: torch.Tensor, obs: dict[str, torch.Tensor], reward: torch.Tensor,
             success: torch.Tensor) -> None:
        for i in range(self.num_envs):
            self.frames[i].append({k: v[i].cpu() for k, v in obs.items()})
            self.actions[i].append(action[i].cpu().float())
            self.rewards[i].append(reward[i].cpu().float())
            self.success[i].append(bool(success[i]))

    def finish(self, i: int, seed: int | None = None, meta: dict[str, Any] | None = None) -> Episode:
        """Env i's episode so far (call `start` for it before recording its next one)."""
        obs = {k: torch.stack([f[k] for f in self.frames[i]]) for k in self.frames[i][0]}
        return Episode(obs=obs, actions=torch.stack(self.actions[i]), success=torch.tensor(self.success[i]),
                       rewards=torch.stack(self.rewards[i]), seed=seed, meta=dict(meta or {}))
