"""MPPI planning in the world model's latent space (TD-MPC2's planner, as a pure function).

`plan` takes the model, the current latents of a batch of environments, a value
function that scores action sequences, and the previous plan's mean (warm start). It
has no hidden state, so the same code runs inside training, evaluation and the ROS 2
policy node. `Planner` is the small stateful wrapper that keeps the warm start between
decisions and resets it per environment.

The value function is passed in so each objective scores trajectories its own way:
`td_value` builds TD-MPC2's estimate (discounted latent rewards plus a terminal Q) from
any per-step reward, e.g. the CDRED reward; the IQ objective supplies its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from sim2real.config import PlannerConfig
from sim2real.world_model import WorldModel

RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(z [..., L], a [..., A]) -> reward [..., 1]."""

ValueFn = Callable[[WorldModel, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, z [N, S, L], actions [H, N, S, A]) -> value of each sequence [N, S]."""


def discount_from_episode_length(episode_length: int, denom: float = 5.0,
                                 lo: float = 0.95, hi: float = 0.995) -> float:
    """TD-MPC2's heuristic: gamma = (T/denom - 1) / (T/denom), clipped to [lo, hi]."""
    frac = episode_length / denom
    return float(min(max((frac - 1.0) / frac, lo), hi))


def td_value(reward_fn: RewardFn, discount: float) -> ValueFn:
    """Value of an action sequence: sum_t gamma^t r(z_t, a_t) + gamma^H avgQ(z_H, pi(z_H))."""

    def value(model: WorldModel, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
        gamma = 1.0
        for a in actions:
            total += gamma * reward_fn(z, a).squeeze(-1)
            z = model.next(z, a)
            gamma *= discount
        a_last, _ = model.pi(z)
        return total + gamma * model.Q(z, a_last, return_type="avg").squeeze(-1)

    return value


@dataclass
class Plan:
    """Result of one planning call.

    Attributes:
        action: the action to execute now, [N, A].
        mean: refitted mean of the sampling distribution, [H, N, A]: pass it back as
            `prev_mean` next step (None in policy-prior mode).
        std: refitted std, [H, N, A] (None in policy-prior mode).
    """

    action: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None


@torch.no_grad()
def plan(model: WorldModel, z: torch.Tensor, value_fn: ValueFn, prev_mean: torch.Tensor | None,
         cfg: PlannerConfig, explore: bool = False) -> Plan:
    """Choose actions for a batch of environments by MPPI (or the policy prior alone).

    Args:
        model: the world model (only encode/next/pi/Q are used).
        z: current latents [N, L], one row per environment.
        value_fn: scores action sequences, see `ValueFn`.
        prev_mean: the previous call's `Plan.mean` [H, N, A] to warm-start from (shifted by
            one step), or None at the start of an episode.
        cfg: planner settings.
        explore: add the final std-scaled noise to the action (training); without it the
            chosen action is deterministic given torch's RNG state.

    Randomness comes from torch's global RNG: seed it with torch.manual_seed for
    reproducible plans.
    """
    if not cfg.mpc:
        action, info = model.pi(z)
        return Plan(action=action if explore else info.mean, mean=None, std=None)

    n, latent_dim = z.shape
    a_dim, horizon = model.action_dim, cfg.horizon
    num_samples = cfg.num_samples
    num_pi = min(cfg.num_pi_trajs, num_samples)
    num_elites = min(cfg.num_elites, num_samples)
    iterations = cfg.iterations + 2 * int(a_dim >= 20)  # TD-MPC2: more refits for large action spaces
    if horizon < 1 or iterations < 1 or num_samples < 1:
        raise ValueError(f"planner needs horizon, iterations and num_samples >= 1, got {cfg}")

    actions = torch.empty(horizon, n, num_samples, a_dim, device=z.device, dtype=z.dtype)
    if num_pi > 0:
        z_pi = z.unsqueeze(1).expand(n, num_pi, latent_dim)
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            for t in range(horizon):
                actions[t, :, :num_pi], _ = model.pi(z_pi)
                if t < horizon - 1:
                    z_pi = model.next(z_pi, actions[t, :, :num_pi])

    mean = torch.zeros(horizon, n, a_dim, device=z.device, dtype=z.dtype)
    std = torch.full_like(mean, cfg.max_std)
    if prev_mean is not None:
        if prev_mean.shape != mean.shape:
            raise ValueError(f"prev_mean has shape {tuple(prev_mean.shape)}, expected {tuple(mean.shape)} "
                             "(horizon, num_envs, action_dim)")
        mean[:-1] = prev_mean[1:]

    z_samples = z.unsqueeze(1).expand(n, num_samples, latent_dim)
    num_gauss = num_samples - num_pi
    noise = torch.empty(horizon, n, num_gauss, a_dim, device=z.device, dtype=z.dtype)
    env_idx = torch.arange(n, device=z.device)
    for _ in range(iterations):
        noise.normal_()
        actions[:, :, num_pi:] = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp_(-1.0, 1.0)
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            value = value_fn(model, z_samples, actions)
        value = value.float().nan_to_num_(0.0)  # [N, S]
        elite_value, elite_idx = torch.topk(value, num_elites, dim=1)  # [N, K]
        elite_actions = actions[:, env_idx.unsqueeze(1), elite_idx]  # [H, N, K, A]
        score = torch.exp(cfg.temperature * (elite_value - elite_value.max(dim=1, keepdim=True).values))
        score = score / score.sum(dim=1, keepdim=True)
        w = score.unsqueeze(0).unsqueeze(-1)  # [1, N, K, 1]
        mean = (w * elite_actions).sum(dim=2)
        std = ((w * (elite_actions - mean.unsqueeze(2)).pow(2)).sum(dim=2)).sqrt().clamp_(cfg.min_std, cfg.max_std)

    # Execute one elite drawn in proportion to its score (not always the best one).
    choice = torch.multinomial(score, 1).squeeze(1)  # [N]
    action = elite_actions[0, env_idx, choice]  # [N, A]
    if explore:
        action = action + std[0] * torch.randn_like(action)
    return Plan(action=action.clamp(-1.0, 1.0), mean=mean, std=std)


class Planner:
    """Stateful wrapper around `plan`: encodes observations and keeps the warm start.

    Args:
        model: the world model.
        value_fn: how action sequences are scored.
        cfg: planner settings.
    """

    def __init__(self, model: WorldModel, value_fn: ValueFn, cfg: PlannerConfig) -> None:
        self.model, self.value_fn, self.cfg = model, value_fn, cfg
        self.prev_mean: torch.Tensor | None = None

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        """Forget the warm start, for all environments or those where env_mask [N] is True."""
        if env_mask is None or self.prev_mean is None:
            self.prev_mean = None
        else:
            self.prev_mean[:, env_mask] = 0.0

    @torch.no_grad()
    def act(self, obs: Mapping[str, torch.Tensor], explore: bool = False) -> torch.Tensor:
        """Encoder inputs (see WorldModel.encode) for N envs -> actions [N, A]."""
        return self.act_latent(self.model.encode(obs), explore)

    @torch.no_grad()
    def act_latent(self, z: torch.Tensor, explore: bool = False) -> torch.Tensor:
        result = plan(self.model, z, self.value_fn, self.prev_mean, self.cfg, explore)
        self.prev_mean = result.mean
        return result.action
