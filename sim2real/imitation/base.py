"""What every reward-free objective provides, and the batch it is given.

An objective owns whatever trains the critic without an environment reward (CDRED's
random-network predictors, IQ-Learn's inverse soft-Q loss), the policy-prior loss, the
reward it implies and the value the planner maximises. The agent owns the rest of the
update: encoding, the latent rollout, the consistency loss, optimisers and target nets.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

from sim2real.planner import ValueFn
from sim2real.world_model import WorldModel


@dataclass
class LatentRollout:
    """One update's latents, built by the agent from a mixed batch (expert rows first).

    Attributes:
        zs: latent rollout [H+1, N, L]: zs[0] = encode(s_0) and zs[t+1] = model.next(zs[t], a_t),
            both with gradients.
        next_z: targets sg(encode(s_{t+1})) [H, N, L], no gradients.
        actions: [H, N, A].
        terminated: [H, N] bool: s_{t+1} is terminal, so nothing is bootstrapped beyond it.
        num_expert: rows [:num_expert] are expert slices, the rest online slices.
        rho: per-step decay of the horizon losses.
        discount: gamma.
    """

    zs: torch.Tensor
    next_z: torch.Tensor
    actions: torch.Tensor
    terminated: torch.Tensor
    num_expert: int
    rho: float
    discount: float

    def __post_init__(self) -> None:
        if self.zs.ndim != 3 or self.actions.ndim != 3:
            raise ValueError(f"LatentRollout: zs must be [H+1, N, L] and actions [H, N, A], got "
                             f"zs {tuple(self.zs.shape)} and actions {tuple(self.actions.shape)}")
        h, n = self.actions.shape[:2]
        if self.zs.shape[:2] != (h + 1, n):
            raise ValueError(f"LatentRollout.zs has shape {tuple(self.zs.shape)}, expected ({h + 1}, {n}, L) "
                             f"for actions of shape {tuple(self.actions.shape)}")
        if self.next_z.shape != (h, n, self.zs.shape[-1]):
            raise ValueError(f"LatentRollout.next_z has shape {tuple(self.next_z.shape)}, "
                             f"expected {(h, n, self.zs.shape[-1])}")
        if self.terminated.shape != (h, n):
            raise ValueError(f"LatentRollout.terminated has shape {tuple(self.terminated.shape)}, expected {(h, n)}")
        if not 0 < self.num_expert < n:
            raise ValueError(f"LatentRollout.num_expert={self.num_expert}: both halves need rows "
                             f"(batch has {n} rows)")

    @property
    def horizon(self) -> int:
        return self.actions.shape[0]

    def continues(self) -> torch.Tensor:
        """1 - terminated as floats, [H, N, 1]: multiplies every bootstrapped value."""
        return (~self.terminated.bool()).to(self.zs.dtype).unsqueeze(-1)


def horizon_weights(rho: float, steps: int, device: torch.device) -> torch.Tensor:
    """rho^t for t = 0..steps-1."""
    return rho ** torch.arange(steps, device=device, dtype=torch.float32)


def policy_prior_loss(model: WorldModel, zs: torch.Tensor, rho: float, entropy_coef: float,
                      use_scale: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """Max-entropy policy-prior loss on detached latents: mean_t rho^t mean[beta log pi - Q].

    Args:
        model: the world model; only its policy prior receives gradients (Q uses detached
            parameters and zs should already be detached).
        zs: latents [T, N, L].
        rho: per-step decay.
        entropy_coef: beta.
        use_scale: divide Q by the model's running scale, updated here from the first step's
            Q values (TD-MPC2 and CDRED; IQ-MPC uses the raw Q).
    """
    action, info = model.pi(zs)
    q = model.Q(zs, action, return_type="min", detach=True)
    metrics = {"pi_q": float(q.detach().mean()), "pi_entropy": float(info.entropy.detach().mean())}
    if use_scale:
        model.scale.update(q[0])
        q = model.scale(q)
        metrics["pi_scale"] = float(model.scale.value)
    per_step = (entropy_coef * info.log_prob - q).mean(dim=(1, 2))
    loss = (per_step * horizon_weights(rho, zs.shape[0], zs.device)).mean()
    return loss, metrics


class Objective(nn.Module, abc.ABC):
    """A reward-free training objective for the world model's critic and policy prior.

    Its parameters (if any) are trained by the agent's model optimiser together with the
    encoder, dynamics and Q ensemble; its buffers travel in `state_dict()`.
    """

    name: str

    @abc.abstractmethod
    def critic_loss(self, model: WorldModel, batch: LatentRollout) -> tuple[torch.Tensor, dict[str, float]]:
        """Every weighted loss term except consistency, as one scalar, and float metrics.

        The scalar carries gradients into the Q ensemble, the objective's own networks and,
        through batch.zs, the encoder and dynamics.
        """

    @abc.abstractmethod
    def policy_loss(self, model: WorldModel, zs: torch.Tensor, rho: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Policy-prior loss on detached latents zs [H+1, N, L]; only pi gets gradients."""

    @abc.abstractmethod
    def reward(self, model: WorldModel, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Learned reward r(z [..., L], a [..., A]) -> [..., 1], without gradients."""

    @abc.abstractmethod
    def value_fn(self, discount: float) -> ValueFn:
        """The planner's value of action sequences (see `sim2real.planner.ValueFn`)."""
