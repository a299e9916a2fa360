"""CDRED: coupled distributional random expert distillation (method.md §2.3-2.4, §7).

K frozen random target networks map a latent-action pair x = [z, a] to rnd_dim features.
An expert predictor learns to imitate them on expert pairs, a behavioural predictor on
the agent's own pairs. How badly a predictor fits the targets at x (a distributional-RND
bias) says how unfamiliar x is to its data, and the reward couples the two:

    b_f(x) = alpha * sum_d (f(x) - mu(x))^2 + (1 - alpha) * mean_d sqrt(|f(x)^2 - mu(x)^2| / (B2(x) - mu(x)^2))
    r(x)   = bias_scale * (-zeta * b_E(x) + (1 - zeta) * b_B(x))

with mu and B2 the per-feature mean and mean square over the K targets. Reward is high
near the expert's data and away from the agent's own. The critic is TD-MPC2's two-hot
ensemble regressed onto r + gamma * min-of-2 target Q.

The targets are buffers, not parameters: they are in `state_dict()`, so a checkpoint
keeps the exact reward (CDRED-WM kept them in a plain list and lost them on reload).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sim2real.imitation.base import LatentRollout, Objective, horizon_weights, policy_prior_loss
from sim2real.layers import EnsembleMLP
from sim2real.planner import ValueFn, td_value
from sim2real.world_model import WorldModel

# Guards the variance ratio of the distributional bias; CDRED-WM divides without one.
_VAR_EPS = 1e-8


@dataclass
class CdredConfig:
    """CDRED reward model and loss weights (CDRED-WM defaults, method.md §2.3-2.4 and §5).

    Args:
        name: "cdred".
        num_targets: K frozen random target networks (>= 2: the bias divides by their variance).
        rnd_dim: output features of targets and predictors; 0 sizes it from the model
            (its latent_dim, at most 256; CDRED-WM: 256).
        reward_mlp_dim: hidden width of the two predictors; 0 = the model's mlp_dim
            (CDRED-WM: 1024).
        target_mlp_dim: hidden width of the random targets (2 hidden layers); 0 = half the
            model's mlp_dim (CDRED-WM: the model's mlp_dim).
        num_reward_layers: hidden layers of the two predictors (CDRED-WM: 3).
        expert_coef: zeta, weight of the expert term of the reward.
        reward_ema_coef: alpha, mix of the squared-error and variance-ratio bias terms.
        bias_scale: overall reward scale.
        value_coef: weight of the two-hot TD loss.
        rnd_coef: weight of the predictors' distillation loss.
        entropy_coef: beta of the policy-prior loss.
        target_seed: seed of the random targets; None draws it from torch's global RNG
            (so it follows the run's seed, as CDRED-WM does).

    Sized from the model by default (configs/objective/cdred.yaml says why and what it costs).
    """

    name: str = "cdred"
    num_targets: int = 5
    rnd_dim: int = 0
    reward_mlp_dim: int = 0
    target_mlp_dim: int = 0
    num_reward_layers: int = 2
    expert_coef: float = 0.8
    reward_ema_coef: float = 0.9
    bias_scale: float = 1.0
    value_coef: float = 0.1
    rnd_coef: float = 0.1
    entropy_coef: float = 1e-4
    target_seed: int | None = None


@dataclass(frozen=True)
class CdredSizes:
    """The widths a CdredConfig resolves to for one model (its zeros replaced)."""

    rnd_dim: int
    reward_mlp_dim: int
    target_mlp_dim: int


def cdred_sizes(cfg: CdredConfig, latent_dim: int, mlp_dim: int) -> CdredSizes:
    """Resolve the config's 0 ("from the model") widths for a model of latent_dim / mlp_dim."""
    for field in ("rnd_dim", "reward_mlp_dim", "target_mlp_dim"):
        if getattr(cfg, field) < 0:
            raise ValueError(f"objective.{field}={getattr(cfg, field)}: expected a width > 0, or 0 to size it "
                             "from the model")
    return CdredSizes(rnd_dim=cfg.rnd_dim or min(latent_dim, 256),
                      reward_mlp_dim=cfg.reward_mlp_dim or mlp_dim,
                      target_mlp_dim=cfg.target_mlp_dim or max(mlp_dim // 2, 1))


class CdredObjective(Objective):
    """CDRED critic, reward and policy-prior losses for one world model.

    Args:
        cfg: CDRED settings.
        latent_dim / action_dim: the model's latent and action sizes.
        mlp_dim: the model's hidden width (what zero widths in cfg are sized from).
    """

    name = "cdred"

    def __init__(self, cfg: CdredConfig, latent_dim: int, action_dim: int, mlp_dim: int) -> None:
        super().__init__()
        if cfg.num_targets < 2:
            raise ValueError(f"objective.num_targets={cfg.num_targets}: CDRED needs >= 2 random targets "
                             "(its reward divides by their variance)")
        for field in ("expert_coef", "reward_ema_coef"):
            if not 0.0 <= getattr(cfg, field) <= 1.0:
                raise ValueError(f"objective.{field} must lie in [0, 1], got {getattr(cfg, field)}")
        self.cfg = cfg
        sizes = cdred_sizes(cfg, latent_dim, mlp_dim)
        in_dim = latent_dim + action_dim
        # Member 0 is the expert predictor f_E, member 1 the behavioural predictor f_B.
        self.predictors = EnsembleMLP(2, in_dim, cfg.num_reward_layers * [sizes.reward_mlp_dim], sizes.rnd_dim,
                                      zero_output=False)
        seed = cfg.target_seed if cfg.target_seed is not None else int(torch.randint(2**62, ()).item())
        gen = torch.Generator().manual_seed(seed)
        dims = [in_dim, sizes.target_mlp_dim, sizes.target_mlp_dim, sizes.rnd_dim]
        self.num_target_layers = len(dims) - 1
        for i in range(self.num_target_layers):
            w = torch.empty(cfg.num_targets, dims[i], dims[i + 1])
            b = torch.zeros(cfg.num_targets, 1, dims[i + 1])
            if i < self.num_target_layers - 1:  # orthogonal hidden layers (method.md §2.2)
                for k in range(cfg.num_targets):
                    torch.nn.init.orthogonal_(w[k], generator=gen)
            else:  # PyTorch's default Linear init, as CDRED-WM's output layers keep it
                bound = 1.0 / math.sqrt(dims[i])
                w.uniform_(-bound, bound, generator=gen)
                b.uniform_(-bound, bound, generator=gen)
            self.register_buffer(f"target_w{i}", w)
            self.register_buffer(f"target_b{i}", b)

    # ---- networks --------------------------------------------------------------------------
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen random features of x [..., L+A] -> [K, ..., rnd_dim] (LayerNorm + Mish hidden layers)."""
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(self.cfg.num_targets, -1, -1)
        for i in range(self.num_target_layers):
            h = torch.baddbmm(getattr(self, f"target_b{i}"), h, getattr(self, f"target_w{i}"))
            if i < self.num_target_layers - 1:
                h = F.mish(F.layer_norm(h, h.shape[-1:]))
        return h.view(h.shape[0], *lead, h.shape[-1])

    def coupled_reward(self, targets: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """The CDRED reward from target features [K, ..., D] and predictions [2, ..., D] -> [..., 1].

        The squared-error term sums over features while the variance-ratio term averages
        them, as CDRED-WM does: with rnd_dim 256 the first term dominates.
        """
        targets, preds = targets.float(), preds.float()
        mu = targets.mean(dim=0)
        var = (targets.pow(2).mean(dim=0) - mu.pow(2)).clamp_min(_VAR_EPS)
        alpha = self.cfg.reward_ema_coef
        bias = (alpha * (preds - mu).pow(2).sum(-1)
                + (1.0 - alpha) * ((preds.pow(2) - mu.pow(2)).abs() / var).sqrt().mean(-1))
        zeta = self.cfg.expert_coef
        return (self.cfg.bias_scale * (-zeta * bias[0] + (1.0 - zeta) * bias[1])).unsqueeze(-1)

    @torch.no_grad()
    def latent_reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """r(z [..., L], a [..., A]) -> [..., 1]."""
        x = torch.cat([z, a], dim=-1)
        return self.coupled_reward(self.targets(x), self.predictors(x))

    # ---- Objective ----------------------------------------------------------------------------
    def reward(self, model: WorldModel, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.latent_reward(z, a)

    def value_fn(self, discount: float) -> ValueFn:
        return td_value(self.latent_reward, discount)

    def critic_loss(self, model: WorldModel, batch: LatentRollout) -> tuple[torch.Tensor, dict[str, float]]:
        """value_coef * two-hot TD loss + rnd_coef * distillation loss (method.md §2.3)."""
        cfg, b, h = self.cfg, batch.num_expert, batch.horizon
        weights = horizon_weights(batch.rho, h, batch.zs.device)
        x = torch.cat([batch.zs[:-1], batch.actions], dim=-1)  # [H, N, L+A], with gradients

        # Distillation: f_E on the expert rows, f_B on the online rows, each towards one
        # target drawn per sample. x is not detached: this loss also shapes encoder and dynamics.
        # These two passes also give the reward its own-data predictions (detached); only the
        # cross terms (f_E on online rows, f_B on expert rows) need an extra pass.
        expert_idx = torch.zeros(1, dtype=torch.long, device=x.device)
        pred_expert = self.predictors(x[:, :b], members=expert_idx)[0]
        pred_online = self.predictors(x[:, b:], members=expert_idx + 1)[0]
        with torch.no_grad():
            features = self.targets(x)  # [K, H, N, D]
            preds = torch.stack([
                torch.cat([pred_expert.detach(), self.predictors(x[:, b:], members=expert_idx)[0]], dim=1),
                torch.cat([self.predictors(x[:, :b], members=expert_idx + 1)[0], pred_online.detach()], dim=1)])
            reward = self.coupled_reward(features, preds)  # [H, N, 1]
            next_action, _ = model.pi(batch.next_z)
            next_q = model.Q(batch.next_z, next_action, return_type="min", target=True)
            td_target = reward + batch.discount * batch.continues() * next_q

        # Two-hot cross-entropy for every member, rho^t-weighted, averaged over steps and members.
        logits = model.Q(batch.zs[:-1], batch.actions, return_type="all")  # [num_q, H, N, bins]
        ce = model.two_hot.soft_ce(logits, td_target).mean(dim=(2, 3))  # [num_q, H]
        q_loss = (ce * weights).sum(dim=1).mean() / h

        k = torch.randint(cfg.num_targets, x.shape[:2], device=x.device)
        chosen = features.gather(0, k[None, ..., None].expand(1, *features.shape[1:]))[0]  # [H, N, D]
        rnd_expert = (pred_expert - chosen[:, :b]).pow(2).mean(dim=(1, 2))  # [H]
        rnd_online = (pred_online - chosen[:, b:]).pow(2).mean(dim=(1, 2))
        rnd_loss = ((rnd_expert + rnd_online) * weights).sum() / h

        loss = cfg.value_coef * q_loss + cfg.rnd_coef * rnd_loss
        with torch.no_grad():
            metrics = {
                "q_loss": float(q_loss.detach()),
                "rnd_loss": float(rnd_loss.detach()),
                "rnd_loss_expert": float((rnd_expert * weights).sum() / h),
                "rnd_loss_online": float((rnd_online * weights).sum() / h),
                "reward_expert": float(reward[:, :b].mean()),
                "reward_online": float(reward[:, b:].mean()),
                "td_target": float(td_target.mean()),
            }
        return loss, metrics

    def policy_loss(self, model: WorldModel, zs: torch.Tensor, rho: float) -> tuple[torch.Tensor, dict[str, float]]:
        """TD-MPC2's prior loss: Q over the running scale (updated here) plus beta * log pi."""
        return policy_prior_loss(model, zs, rho, self.cfg.entropy_coef, use_scale=True)
