"""The agent: world model + imitation objective + optimisers; `act()` and `update(batch)`.

One update (TD-MPC2's, with the reward head replaced by the objective):
1. encode every observation of the mixed batch (expert half first) without gradients:
   these are the consistency targets sg(h(s_{t+1}));
2. encode s_0 with gradients and roll the latent dynamics through the batch's actions;
3. loss = consistency_coef * L_cons + the objective's critic loss; one Adam step on the
   encoder (lr scaled by enc_lr_scale), dynamics, Q ensemble and the objective's networks;
4. a separate policy-prior step on the detached latents; then Polyak-update target Qs.

Two hooks serve offline finetuning (sim2real/finetune.py): `frozen` modules are left out of
the optimisers (and get no gradients), and `update(..., imagined=...)` takes the behaviour
half of a batch as latent rollouts of the policy prior (`imagine`) instead of observed slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from sim2real.buffer import SliceBatch
from sim2real.config import PlannerConfig
from sim2real.contract import Contract
from sim2real.imitation import Objective
from sim2real.imitation.base import LatentRollout
from sim2real.planner import Planner
from sim2real.world_model import WorldModel


@dataclass
class AgentConfig:
    """Optimisation settings (TD-MPC2 / CDRED-WM defaults).

    Args:
        batch_size: slices per half of every update (expert and online: 2x this in all).
        horizon: slice length in actions (H); also what the planner should use.
        lr: Adam learning rate.
        enc_lr_scale: the encoder's learning rate is lr times this.
        grad_clip_norm: global gradient-norm clip.
        rho: per-step decay of the horizon losses.
        consistency_coef: weight of the latent consistency loss.
        bc_coef: weight of a behaviour-cloning term on the policy prior: the squared error
            between its mean action and the expert's at the encoded expert observations of
            every batch.
            0 is TD-MPC2/CDRED-WM's prior (pure max-Q); IQ-MPC exposes the same term as
            `reg_coef`. With few demos and a CPU budget it gives the planner a prior that
            already imitates while the critic is still learning.
        pi_q_coef: weight of the objective's own prior loss (max Q, entropy). 1 with
            bc_coef=0 is TD-MPC2's prior; early in training the Q of an imitation reward is
            still noise, and a large weight pulls the prior off the expert's actions.
    """

    batch_size: int = 256
    horizon: int = 3
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    rho: float = 0.5
    consistency_coef: float = 20.0
    bc_coef: float = 0.0
    pi_q_coef: float = 1.0


FREEZABLE = ("encoder", "dynamics", "q", "pi", "reward")
"""Module names `Agent(frozen=...)` accepts; "reward" is the objective's trainable networks
(CDRED's predictors; IQ has none). CDRED's random targets are buffers and never train."""


@dataclass
class ImaginedBatch:
    """Behaviour slices imagined in latent space (no observations): `Agent.imagine`.

    Attributes:
        zs: latents [H+1, B, L]; zs[t+1] = model.next(zs[t], actions[t]), no gradients.
        actions: the policy prior's actions [H, B, A].
    """

    zs: torch.Tensor
    actions: torch.Tensor


class Agent:
    """Acts with the planner and learns from mixed expert/online slices.

    Args:
        model: the world model.
        objective: the reward-free objective (its reward drives planning and TD targets).
        contract: observation/action contract (turns named features into encoder inputs).
        cfg: optimisation settings.
        planner_cfg: how to act.
        discount: gamma (from the episode length).
        frozen: names from FREEZABLE whose parameters stay fixed: they get no gradients and
            no optimiser ("q" also stops the Polyak update of the target Qs).
    """

    def __init__(self, model: WorldModel, objective: Objective, contract: Contract, cfg: AgentConfig,
                 planner_cfg: PlannerConfig, discount: float, frozen: Sequence[str] = ()) -> None:
        self.model, self.objective, self.contract = model, objective, contract
        self.cfg, self.discount = cfg, discount
        unknown = sorted(set(frozen) - set(FREEZABLE))
        if unknown:
            raise ValueError(f"freeze: unknown module(s) {unknown}; expected names from {list(FREEZABLE)}")
        self.frozen = tuple(dict.fromkeys(frozen))
        own = [p for p in objective.parameters() if p.requires_grad]
        params = {"encoder": list(model._encoder.parameters()), "dynamics": list(model._dynamics.parameters()),
                  "q": list(model._Qs.parameters()), "pi": list(model._pi.parameters()), "reward": own}
        for name in self.frozen:
            for p in params[name]:
                p.requires_grad_(False)
        lrs = {"encoder": cfg.lr * cfg.enc_lr_scale}
        groups = [{"params": params[name], **({"lr": lrs[name]} if name in lrs else {})}
                  for name in ("encoder", "dynamics", "q", "reward") if name not in self.frozen and params[name]]
        self.optim = torch.optim.Adam(groups, lr=cfg.lr) if groups else None
        self.pi_optim = (torch.optim.Adam(params["pi"], lr=cfg.lr, eps=1e-5) if "pi" not in self.frozen
                         else None)
        self.planner = Planner(model, objective.value_fn(discount), planner_cfg)

    # ---- acting --------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], explore: bool = False) -> torch.Tensor:
        """Named observation features [N, ...] -> actions [N, A] (planner or policy prior)."""
        inputs = self.contract.model_inputs({k: v.to(self._device) for k, v in obs.items()})
        return self.planner.act(inputs, explore=explore)

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        """New episodes: forget the planner's warm start (all envs or where env_mask is True)."""
        self.planner.reset(env_mask)

    # ---- learning -------------------------------------------------------------------------
    def encode_batch(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Features [T, N, ...] -> latents [T, N, L] (time folded into the batch for one pass)."""
        steps, n = next(iter(obs.values())).shape[:2]
        flat = {k: v.reshape(steps * n, *v.shape[2:]) for k, v in obs.items()}
        return self.model.encode(self.contract.model_inputs(flat)).reshape(steps, n, -1)

    @torch.no_grad()
    def imagine(self, obs: dict[str, torch.Tensor], horizon: int) -> ImaginedBatch:
        """Roll the policy prior (sampled actions) through the latent dynamics for `horizon`
        steps from encoded observations (named features [B, ...])."""
        z = self.encode_batch({k: v.unsqueeze(0) for k, v in obs.items()})[0]
        zs, actions = [z], []
        for _ in range(horizon):
            action, _ = self.model.pi(z)
            z = self.model.next(z, action)
            zs.append(z)
            actions.append(action)
        return ImaginedBatch(zs=torch.stack(zs), actions=torch.stack(actions))

    def update(self, batch: SliceBatch, num_expert: int, imagined: ImaginedBatch | None = None) -> dict[str, float]:
        """One gradient step on a mixed batch whose first `num_expert` slices are expert slices.

        With `imagined`, `batch` holds expert slices only (num_expert == its size) and the
        behaviour half is the imagined one: it enters the objective's losses and the prior's
        as latents, while the consistency loss sees only observed slices (an imagined
        rollout is its own dynamics' prediction, so it has nothing to be consistent with).
        """
        self.model.train()
        cfg = self.cfg
        horizon = batch.actions.shape[0]
        if imagined is not None and (num_expert != batch.batch_size or imagined.actions.shape[0] != horizon):
            raise ValueError(f"update with imagined slices: batch must hold expert slices only (num_expert="
                             f"{num_expert}, batch {batch.batch_size}) and the same horizon (batch H={horizon}, "
                             f"imagined H={imagined.actions.shape[0]})")
        with torch.no_grad():
            next_z = self.encode_batch({k: v[1:] for k, v in batch.obs.items()})
        z = z0 = self.encode_batch({k: v[:1] for k, v in batch.obs.items()})[0]
        zs = [z]
        consistency = torch.zeros((), device=z.device)
        for t in range(horizon):
            z = self.model.next(z, batch.actions[t])
            consistency = consistency + cfg.rho ** t * F.mse_loss(z, next_z[t])
            zs.append(z)
        consistency = consistency / horizon
        zs, actions, terminated = torch.stack(zs), batch.actions, batch.terminated
        if imagined is not None:
            zs = torch.cat([zs, imagined.zs.detach()], dim=1)
            next_z = torch.cat([next_z, imagined.zs[1:].detach()], dim=1)
            actions = torch.cat([actions, imagined.actions.detach()], dim=1)
            terminated = torch.cat([terminated, torch.zeros_like(imagined.actions[..., 0], dtype=torch.bool)], dim=1)
        rollout = LatentRollout(zs=zs, next_z=next_z, actions=actions, terminated=terminated,
                                num_expert=num_expert, rho=cfg.rho, discount=self.discount)
        critic_loss, metrics = self.objective.critic_loss(self.model, rollout)
        loss = cfg.consistency_coef * consistency + critic_loss
        if cfg.bc_coef > 0:
            # Like TD-MPC2's reward head, the imitation term also shapes the encoder: the
            # expert's action at s_0 must be readable from its latent. Only the encoder
            # learns from this term (pi's gradients are cleared before its own step).
            loss = loss + cfg.bc_coef * self._bc_loss(z0[:num_expert].unsqueeze(0), batch.actions[:1, :num_expert])
        grad_norm = torch.zeros(())
        if self.optim is not None:
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in self.optim.param_groups for p in g["params"]], cfg.grad_clip_norm)
            self.optim.step()

        pi_metrics: dict[str, float] = {}
        pi_loss = torch.zeros(())
        if self.pi_optim is not None:
            if cfg.pi_q_coef > 0:
                pi_loss, pi_metrics = self.objective.policy_loss(self.model, rollout.zs.detach(), cfg.rho)
                pi_loss = cfg.pi_q_coef * pi_loss
            else:  # a pure-BC prior: the Q term would cost a third of the update for nothing
                pi_loss = torch.zeros((), device=z.device)
            if cfg.bc_coef > 0:
                # The prior acts on encoded observations, so it clones the expert there: the
                # encodings of s_0 .. s_{H-1}, not the dynamics' predictions of them.
                encoded = torch.cat([rollout.zs[:1], next_z[:-1]]).detach()[:, :num_expert]
                bc_loss = self._bc_loss(encoded, batch.actions[:, :num_expert])
                pi_loss = pi_loss + cfg.bc_coef * bc_loss
                pi_metrics["pi_bc_loss"] = float(bc_loss.detach())
            self.pi_optim.zero_grad(set_to_none=True)
            pi_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model._pi.parameters(), cfg.grad_clip_norm)
            self.pi_optim.step()
        if "q" not in self.frozen:
            self.model.update_target_Q()
        return {"consistency_loss": float(consistency.detach()), "total_loss": float(loss.detach()),
                "grad_norm": float(grad_norm),
                "pi_loss": float(pi_loss.detach()), **metrics, **pi_metrics}

    def _bc_loss(self, zs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """rho-weighted squared error between the prior's mean action at latents zs [H, E, L]
        and the expert's actions [H, E, A]."""
        _, info = self.model.pi(zs)
        per_step = (info.mean - actions).pow(2).mean(dim=(1, 2))
        weights = self.cfg.rho ** torch.arange(per_step.shape[0], device=per_step.device, dtype=per_step.dtype)
        return (per_step * weights).mean()

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the model weights (in the checkpoint itself)."""
        return {"objective": self.objective.state_dict(),
                "optim": self.optim.state_dict() if self.optim is not None else None,
                "pi_optim": self.pi_optim.state_dict() if self.pi_optim is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(state["objective"])
        for name, optim in (("optim", self.optim), ("pi_optim", self.pi_optim)):
            if optim is not None and state.get(name) is not None:
                optim.load_state_dict(state[name])

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device
