"""IQ-MPC: inverse soft-Q learning in the world model's latent space (method.md §6).

IQ-Learn trains Q directly, with no reward network: the reward Q is implying,
r = Q(z, a) - gamma * V(z'), is pushed up on expert pairs, and a chi^2 regulariser over
expert and online pairs keeps it bounded. Per Q member, with V(z) = Q(z, pi(z)) - beta log pi
(min of two members) and V-bar the same with target Qs:

    L_iq = sum_t rho^t [ -E_E[Q - gamma V-bar(z')] + (1 - gamma) E_E[V(z_0)]
                         + 1/(4 alpha) E_{E+B}[(Q - gamma V-bar(z'))^2] ]   (+ gradient penalty)

IQ-MPC gave its Q ensemble scalar heads. Here the Qs are the world model's two-hot heads,
decoded to scalars (differentiably: softmax expectation, then symexp), so one world
model serves both objectives. Decoded values live in [symexp(vmin), symexp(vmax)].
Terminal steps drop the gamma V-bar term. IQ-MPC's optional BC regulariser on the policy
(reg_coef, default 0) is left out: `policy_loss` sees no expert actions, and the world
model has no log-density for a given action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sim2real.imitation.base import LatentRollout, Objective, horizon_weights, policy_prior_loss
from sim2real.planner import ValueFn
from sim2real.world_model import WorldModel


@dataclass
class IqConfig:
    """IQ-MPC loss settings (method.md §5-6).

    Args:
        name: "iq".
        chi2_alpha: alpha of the chi^2 regulariser (its coefficient is 1 / (4 alpha)).
        use_v0: value term (1 - gamma) E[V(z_0)] on the expert rows' first latents; otherwise
            E_B[V(z_t) - gamma V-bar(z'_t)] on the online rows.
        grad_pen: add the gradient penalty (||grad_x avgQ(x)|| - 1)^2 on expert/online interpolates.
        grad_pen_coef: its weight.
        value_coef: weight of the whole IQ loss.
        entropy_coef: beta, in V and in the policy-prior loss.
    """

    name: str = "iq"
    chi2_alpha: float = 0.5
    use_v0: bool = True
    grad_pen: bool = False
    grad_pen_coef: float = 1.0
    value_coef: float = 0.1
    entropy_coef: float = 1e-4


class IqObjective(Objective):
    """IQ-Learn critic loss, reward recovery and planning value for one world model.

    The implied reward needs gamma. `value_fn(discount)` and `critic_loss` record the one
    they are given; `reward` uses it unless called with `discount=`.
    """

    name = "iq"

    def __init__(self, cfg: IqConfig) -> None:
        super().__init__()
        if cfg.chi2_alpha <= 0:
            raise ValueError(f"objective.chi2_alpha must be > 0, got {cfg.chi2_alpha}")
        self.cfg = cfg
        self.discount: float | None = None

    def soft_value(self, model: WorldModel, z: torch.Tensor, target: bool = False) -> torch.Tensor:
        """V(z) = min-of-2 Q(z, a) - beta log pi(a|z) with a ~ pi(z), [..., 1].

        The action is sampled without gradients: this trains the critic, not the policy.
        """
        with torch.no_grad():
            action, info = model.pi(z)
        return model.Q(z, action, return_type="min", target=target) - self.cfg.entropy_coef * info.log_prob

    # ---- Objective ----------------------------------------------------------------------------
    def critic_loss(self, model: WorldModel, batch: LatentRollout) -> tuple[torch.Tensor, dict[str, float]]:
        """value_coef * the IQ-Learn loss, per Q member and rho^t-weighted (method.md §6.2)."""
        cfg, b, h, gamma = self.cfg, batch.num_expert, batch.horizon, batch.discount
        self.discount = gamma
        weights = horizon_weights(batch.rho, h, batch.zs.device)
        zs = batch.zs[:-1]

        with torch.no_grad():
            next_v = gamma * batch.continues() * self.soft_value(model, batch.next_z, target=True)  # [H, N, 1]
        q = model.two_hot.decode(model.Q(zs, batch.actions, return_type="all"))  # [num_q, H, N, 1]
        implied = q - next_v  # the reward Q implies
        softq = -implied[:, :, :b].mean(dim=(2, 3))  # [num_q, H]
        chi2 = implied.pow(2).mean(dim=(2, 3)) / (4.0 * cfg.chi2_alpha)
        if cfg.use_v0:
            value = (1.0 - gamma) * self.soft_value(model, batch.zs[0, :b]).mean()  # scalar
            value_per_step = value.expand(h)
        else:
            value_per_step = (self.soft_value(model, zs[:, b:]) - next_v[:, b:]).mean(dim=(1, 2))  # [H]
        per_member = softq + chi2 + value_per_step  # [num_q, H]
        iq_loss = (per_member * weights).sum(dim=1).mean() / h

        if cfg.grad_pen:
            penalty = torch.stack([self._gradient_penalty(model, zs[t], batch.actions[t], b) for t in range(h)])
            gp = (penalty * weights).sum() / h
            iq_loss = iq_loss + cfg.grad_pen_coef * gp

        with torch.no_grad():
            metrics = {
                "iq_loss": float(iq_loss.detach()),
                "softq_loss": float((softq * weights).sum(dim=1).mean() / h),
                "chi2_loss": float((chi2 * weights).sum(dim=1).mean() / h),
                "v_loss": float((value_per_step * weights).sum() / h),
                "reward_expert": float(implied[:, :, :b].mean()),
                "reward_online": float(implied[:, :, b:].mean()),
                "q_expert": float(q[:, :, :b].mean()),
                "q_online": float(q[:, :, b:].mean()),
            }
            if cfg.grad_pen:
                metrics["grad_pen"] = float(gp)
        return cfg.value_coef * iq_loss, metrics

    def _gradient_penalty(self, model: WorldModel, z: torch.Tensor, a: torch.Tensor, num_expert: int) -> torch.Tensor:
        """(||grad_x avgQ(x)||_2 - 1)^2 at x = u [z_E, a_E] + (1 - u) [z_B, a_B], u ~ U(0, 1).

        Pairs the first min(#expert, #online) rows of each half. The interpolates are
        detached from the latents (as IQ-MPC): the penalty trains only the Q ensemble.
        """
        n = min(num_expert, z.shape[0] - num_expert)
        expert = torch.cat([z[:n], a[:n]], dim=-1).detach()
        online = torch.cat([z[num_expert:num_expert + n], a[num_expert:num_expert + n]], dim=-1).detach()
        u = torch.rand(n, 1, device=z.device, dtype=z.dtype)
        x = (u * expert + (1.0 - u) * online).requires_grad_(True)
        q = model.Q(x[:, :z.shape[-1]], x[:, z.shape[-1]:], return_type="avg")
        (grad,) = torch.autograd.grad(q.sum(), x, create_graph=True)
        return (grad.norm(dim=-1) - 1.0).pow(2).mean()

    def policy_loss(self, model: WorldModel, zs: torch.Tensor, rho: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Maximise min Q - beta log pi (no running scale, as IQ-MPC)."""
        return policy_prior_loss(model, zs, rho, self.cfg.entropy_coef, use_scale=False)

    @torch.no_grad()
    def reward(self, model: WorldModel, z: torch.Tensor, a: torch.Tensor,
               discount: float | None = None) -> torch.Tensor:
        """Recovered reward r = Q(z, a) - gamma V(next(z, a)), [..., 1] (method.md §6.3)."""
        gamma = self._discount(discount)
        return model.Q(z, a, return_type="min") - gamma * self.soft_value(model, model.next(z, a))

    def value_fn(self, discount: float) -> ValueFn:
        """IQ-MPC's planning value (method.md §6.3):

        G = sum_t gamma^t [Q(z_t, a_t) - gamma V(z_{t+1}) - beta log pi(.|z_t)]
            + gamma^H [avgQ(z_H, pi(z_H)) - beta log pi(.|z_H)].
        """
        self.discount = discount
        beta = self.cfg.entropy_coef

        def value(model: WorldModel, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            total = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype)
            weight = 1.0
            # One policy sample per latent serves both its entropy bonus and its soft value.
            pi_action, info = model.pi(z)
            for a in actions:
                q = model.Q(z, a, return_type="min")
                entropy_bonus = -beta * info.log_prob
                z = model.next(z, a)
                pi_action, info = model.pi(z)
                next_v = model.Q(z, pi_action, return_type="min") - beta * info.log_prob
                total += weight * (q - discount * next_v + entropy_bonus).squeeze(-1)
                weight *= discount
            terminal = model.Q(z, pi_action, return_type="avg") - beta * info.log_prob
            return total + weight * terminal.squeeze(-1)

        return value

    def _discount(self, discount: float | None) -> float:
        if discount is not None:
            return discount
        if self.discount is None:
            raise ValueError("IqObjective.reward needs gamma: pass discount=, or call value_fn(discount) "
                             "or critic_loss first")
        return self.discount
