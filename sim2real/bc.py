"""Behaviour cloning: the offline imitation reference every stage is compared with.

An MLP (a conv encoder first for RGB contracts) maps the contract's observation to an
action in [-1, 1], trained by mean-squared error on expert (observation, action) pairs.
With `chunk > 1` it predicts the next `chunk` actions at once and executes them open loop
(action chunking), which smooths the jerky single-step fits of few demos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sim2real.contract import Contract
from sim2real.data import Episode
from sim2real.layers import conv_encoder, conv_output_dim, mlp
from sim2real.world_model import STATE_STD_FLOOR


@dataclass
class BCConfig:
    """Args:
        hidden_dim / num_layers: MLP width and depth.
        steps: gradient steps.
        batch_size: (observation, action-chunk) pairs per step.
        lr / weight_decay: AdamW settings.
        chunk: actions predicted per observation (1 = plain BC).
        num_channels: conv width for RGB contracts.
        seed: initialisation and sampling seed.
    """

    hidden_dim: int = 256
    num_layers: int = 2
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    chunk: int = 1
    num_channels: int = 32
    seed: int = 0


class BCPolicy(nn.Module):
    """Observation features -> actions; `act`/`reset` make it a `sim2real.evaluate.Policy`."""

    def __init__(self, contract: Contract, cfg: BCConfig) -> None:
        super().__init__()
        if cfg.chunk < 1:
            raise ValueError(f"bc.chunk={cfg.chunk}: expected >= 1")
        self.contract, self.cfg = contract, cfg
        shapes = contract.model_obs_shapes()
        in_dim = 0
        self.rgb: nn.Module | None = None
        if "rgb" in shapes:
            self.rgb = conv_encoder(shapes["rgb"][0], cfg.num_channels, pad=0)
            in_dim += conv_output_dim(self.rgb, shapes["rgb"])
        state_dim = shapes.get("state", (0,))[0]
        in_dim += state_dim
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.head = mlp(in_dim, cfg.num_layers * [cfg.hidden_dim], cfg.chunk * contract.action_dim)
        self._queue: torch.Tensor | None = None  # [N, chunk, A] actions still to execute
        self._left: torch.Tensor | None = None   # [N] how many of them remain

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder inputs -> action chunk [B, chunk, A] in (-1, 1)."""
        parts = []
        if "state" in inputs and self.state_mean.numel():
            parts.append((inputs["state"] - self.state_mean) / self.state_std)
        if self.rgb is not None:
            parts.append(self.rgb(inputs["rgb"]))
        out = torch.tanh(self.head(torch.cat(parts, dim=-1)))
        return out.reshape(out.shape[0], self.cfg.chunk, self.contract.action_dim)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.state_mean.device
        inputs = self.contract.model_inputs({k: v.to(device) for k, v in obs.items()})
        n = next(iter(inputs.values())).shape[0]
        if self._queue is None or self._queue.shape[0] != n:
            self._queue = torch.zeros(n, self.cfg.chunk, self.contract.action_dim, device=device)
            self._left = torch.zeros(n, dtype=torch.long, device=device)
        assert self._left is not None
        empty = self._left == 0
        if empty.any():
            self._queue[empty] = self({k: v[empty] for k, v in inputs.items()})
            self._left[empty] = self.cfg.chunk
        index = self.cfg.chunk - self._left
        action = self._queue[torch.arange(n, device=device), index]
        self._left -= 1
        return action

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        if self._left is None:
            return
        if env_mask is None:
            self._left.zero_()
        else:
            self._left[env_mask.to(self._left.device)] = 0


def _pairs(episodes: list[Episode], contract: Contract, chunk: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Encoder inputs of every step with an action, its next `chunk` actions, and a mask of
    which of them exist (chunks running past the episode end are masked out)."""
    inputs: dict[str, list[torch.Tensor]] = {}
    targets, masks = [], []
    for e in episodes:
        obs = contract.model_inputs({k: v[:-1] for k, v in e.obs.items()})
        for k, v in obs.items():
            inputs.setdefault(k, []).append(v)
        t, a_dim = e.actions.shape
        padded = torch.cat([e.actions.float(), torch.zeros(chunk - 1, a_dim)])
        targets.append(torch.stack([padded[i:i + chunk] for i in range(t)]))
        valid = torch.cat([torch.ones(t), torch.zeros(chunk - 1)])
        masks.append(torch.stack([valid[i:i + chunk] for i in range(t)]))
    return {k: torch.cat(v) for k, v in inputs.items()}, torch.cat(targets), torch.cat(masks)


def cotrain_weights(sim: list[Episode], target: list[Episode], target_fraction: float) -> list[float]:
    """`train_bc` episode weights for `sim + target` that draw `target_fraction` of every
    batch's pairs from `target` (co-training: many sim demos, a few upweighted real ones)."""
    if not (sim and target and 0 < target_fraction < 1):
        raise ValueError(f"cotrain_weights: needs sim and target episodes and 0 < target_fraction < 1 "
                         f"(got {len(sim)}, {len(target)}, {target_fraction})")
    sim_pairs, target_pairs = sum(e.length for e in sim), sum(e.length for e in target)
    return [(1 - target_fraction) / sim_pairs] * len(sim) + [target_fraction / target_pairs] * len(target)


def train_bc(episodes: list[Episode], contract: Contract, cfg: BCConfig, device: str | torch.device = "cpu",
             progress: Any = None, init: BCPolicy | None = None,
             episode_weights: list[float] | None = None) -> BCPolicy:
    """Fit a BCPolicy to the episodes' (observation, action) pairs.

    Args:
        progress: optional callable(step, loss) for progress reporting.
        init: continue training this policy (its architecture, chunk and observation
            normalisation are kept; it is trained in place) instead of a fresh one.
        episode_weights: relative sampling weight of each episode's pairs (default: equal),
            e.g. to upweight a few target demos among many sim demos.
    """
    if not episodes:
        raise ValueError("train_bc: no episodes given")
    if episode_weights is not None and (len(episode_weights) != len(episodes) or min(episode_weights) < 0
                                        or sum(episode_weights) <= 0):
        raise ValueError(f"train_bc: episode_weights needs {len(episodes)} non-negative weights, not all 0; "
                         f"got {len(episode_weights)}")
    gen = torch.Generator().manual_seed(cfg.seed)
    if init is not None:
        policy, chunk = init, init.cfg.chunk
    else:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            policy = BCPolicy(contract, cfg)
        chunk = cfg.chunk
    inputs, targets, masks = _pairs(episodes, contract, chunk)
    if "state" in inputs and init is None:
        policy.state_mean.copy_(inputs["state"].mean(0))
        policy.state_std.copy_(inputs["state"].std(0).clamp(min=STATE_STD_FLOOR))
    pair_weights = None
    if episode_weights is not None:
        pair_weights = torch.cat([torch.full((e.length,), float(w)) for e, w in zip(episodes, episode_weights)])
    policy.to(device)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    targets, masks = targets.to(device), masks.to(device)
    optim = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(cfg.steps, 1))
    n = targets.shape[0]
    policy.train()
    for step in range(cfg.steps):
        size = min(cfg.batch_size, n)
        idx = (torch.randint(0, n, (size,), generator=gen) if pair_weights is None
               else torch.multinomial(pair_weights, size, replacement=True, generator=gen)).to(device)
        pred = policy({k: v[idx] for k, v in inputs.items()})
        err = F.mse_loss(pred, targets[idx], reduction="none").mean(-1)
        loss = (err * masks[idx]).sum() / masks[idx].sum()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if progress is not None:
            progress(step, float(loss.detach()))
    policy.eval()
    return policy
