"""The latent world model: encoder, latent dynamics, policy prior and Q ensemble.

Everything a planner or an objective needs is a component method: `encode`, `next`,
`pi` and `Q`. There is no reward head: the reward-free objectives (sim2real.imitation)
supply the reward, so this module stays the same whichever objective trains it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from sim2real.config import ModelConfig
from sim2real.discrete_regression import TwoHot
from sim2real.layers import EnsembleMLP, NormedLinear, SimNorm, conv_encoder, conv_output_dim, init_weights, mlp
from sim2real.scale import RunningScale

QReturn = Literal["min", "avg", "all"]
_LOG_SQRT_2PI = 0.9189385332046727

# Floor of the per-dimension state std (state units: metres, radians, ...). A feature that is
# constant in the sim demos (the goal's height) would otherwise get std ~1e-6 and turn a few
# millimetres of real sensor noise into inputs of 10^3-10^4 standard deviations: the
# pretrained push_cube prior went from 0.70 to 0.00 success in the MuJoCo target domain.
STATE_STD_FLOOR = 0.01


@dataclass
class PolicyOutput:
    """What `WorldModel.pi` returns besides the sampled action.

    Attributes:
        mean: squashed mean action (the deterministic action), [..., A].
        log_std: log std of the pre-squash Gaussian, [..., A].
        log_prob: log-density of the sampled squashed action, [..., 1].
    """

    mean: torch.Tensor
    log_std: torch.Tensor
    log_prob: torch.Tensor

    @property
    def entropy(self) -> torch.Tensor:
        return -self.log_prob


class Encoder(nn.Module):
    """Observation -> SimNorm latent, for state vectors, RGB frames, or both.

    State only: an MLP whose last layer ends in SimNorm (TD-MPC2). RGB only: the conv
    stack followed by SimNorm (when its flat size equals latent_dim, as in TD-MPC2's 5M
    preset) or by a NormedLinear projection with SimNorm. Both: the two branches are
    concatenated and projected to the latent.
    """

    def __init__(self, cfg: ModelConfig, obs_shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        unknown = set(obs_shapes) - {"state", "rgb"}
        if unknown or not obs_shapes:
            raise ValueError(f"Encoder inputs must be 'state' and/or 'rgb', got {sorted(obs_shapes)}")
        self.obs_shapes = {k: tuple(v) for k, v in obs_shapes.items()}
        both = len(obs_shapes) == 2
        hidden = max(cfg.num_enc_layers - 1, 1) * [cfg.enc_dim]
        fused_dim = 0
        self.state: nn.Module | None = None
        self.rgb: nn.Module | None = None
        if "state" in obs_shapes:
            (state_dim,) = obs_shapes["state"]
            if both:
                self.state = mlp(state_dim, hidden[:-1], cfg.enc_dim, out_act=nn.Mish())
                fused_dim += cfg.enc_dim
            else:
                self.state = mlp(state_dim, hidden, cfg.latent_dim, out_act=SimNorm(cfg.simnorm_dim))
            # Normalisation statistics travel with the model (and its checkpoints).
            self.register_buffer("state_mean", torch.zeros(state_dim))
            self.register_buffer("state_std", torch.ones(state_dim))
        if "rgb" in obs_shapes:
            c, h, w = obs_shapes["rgb"]
            if h != w:
                raise ValueError(f"the RGB encoder expects square frames, got {h}x{w}")
            conv = conv_encoder(c, cfg.num_channels, cfg.shift_pad)
            flat = conv_output_dim(conv, (c, h, w))
            if both:
                self.rgb = conv
                fused_dim += flat
            elif flat == cfg.latent_dim:
                self.rgb = nn.Sequential(conv, SimNorm(cfg.simnorm_dim))
            else:
                self.rgb = nn.Sequential(conv, NormedLinear(flat, cfg.latent_dim, act=SimNorm(cfg.simnorm_dim)))
        self.fuse = NormedLinear(fused_dim, cfg.latent_dim, act=SimNorm(cfg.simnorm_dim)) if both else None

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [k for k in self.obs_shapes if k not in obs]
        if missing:
            raise ValueError(f"encoder input is missing {missing}; it was built for {sorted(self.obs_shapes)}")
        parts = []
        if self.state is not None:
            x = obs["state"]
            parts.append(self.state((x - self.state_mean) / self.state_std))
        if self.rgb is not None:
            x = obs["rgb"]
            lead = x.shape[:-3]
            parts.append(self.rgb(x.reshape(-1, *x.shape[-3:])).reshape(*lead, -1))
        if self.fuse is None:
            return parts[0]
        return self.fuse(torch.cat(parts, dim=-1))


class WorldModel(nn.Module):
    """TD-MPC2-style decoder-free latent world model.

    Args:
        cfg: architecture (a preset from configs/model/).
        obs_shapes: encoder inputs, {"state": (D,)} and/or {"rgb": (C, H, W)}
            (see `Contract.model_obs_shapes`).
        action_dim: size of the action vector in [-1, 1].
    """

    def __init__(self, cfg: ModelConfig, obs_shapes: Mapping[str, tuple[int, ...]], action_dim: int) -> None:
        super().__init__()
        if cfg.latent_dim % cfg.simnorm_dim:
            raise ValueError(f"model.latent_dim={cfg.latent_dim} must be a multiple of "
                             f"model.simnorm_dim={cfg.simnorm_dim}")
        if cfg.num_q < 2:
            raise ValueError(f"model.num_q={cfg.num_q}: the Q ensemble needs at least 2 members")
        self.cfg = cfg
        self.action_dim = action_dim
        self.two_hot = TwoHot(cfg.num_bins, cfg.vmin, cfg.vmax)
        za_dim = cfg.latent_dim + action_dim
        self._encoder = Encoder(cfg, obs_shapes)
        self._dynamics = mlp(za_dim, 2 * [cfg.mlp_dim], cfg.latent_dim, out_act=SimNorm(cfg.simnorm_dim))
        self._pi = mlp(cfg.latent_dim, 2 * [cfg.mlp_dim], 2 * action_dim)
        self.apply(init_weights)
        self._Qs = EnsembleMLP(cfg.num_q, za_dim, 2 * [cfg.mlp_dim], cfg.num_bins, dropout=cfg.dropout)
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self.scale = RunningScale(cfg.tau)

    @property
    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._encoder.obs_shapes)

    def describe(self) -> dict[str, int]:
        """Trainable parameter counts per component."""
        parts = {"encoder": self._encoder, "dynamics": self._dynamics, "pi": self._pi, "Qs": self._Qs}
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(counts.values())
        return counts

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        self._target_Qs.train(False)  # targets never use dropout
        return self

    def set_state_normalization(self, mean: torch.Tensor, std: torch.Tensor, eps: float = STATE_STD_FLOOR) -> None:
        """Store per-dimension state statistics; the encoder standardises its input with them.
        The std is floored at `eps` (state units; see STATE_STD_FLOOR)."""
        if self._encoder.state is None:
            raise ValueError("this model has no state input to normalise")
        self._encoder.state_mean.copy_(mean)
        self._encoder.state_std.copy_(std.clamp(min=eps))

    def encode(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Observation dict ({"state": [B, D]} and/or {"rgb": [B, C, H, W]}) -> latent [B, L]."""
        return self._encoder(obs)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Latent dynamics: (z [..., L], a [..., A]) -> next latent [..., L]."""
        return self._dynamics(torch.cat([z, a], dim=-1))

    def pi(self, z: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, PolicyOutput]:
        """Sample from the tanh-squashed Gaussian policy prior.

        Args:
            z: latents [..., L].
            deterministic: return the squashed mean instead of a sample.

        Returns:
            action [..., A] in (-1, 1), and a PolicyOutput with mean, log_std and log_prob.
        """
        mean, log_std = self._pi(z).chunk(2, dim=-1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        pre_tanh = mean + eps * log_std.exp()
        log_prob = (-0.5 * eps.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1, keepdim=True)
        action = torch.tanh(pre_tanh)
        # Change of variables for the tanh squash.
        log_prob = log_prob - torch.log(F.relu(1.0 - action.pow(2)) + 1e-6).sum(-1, keepdim=True)
        return action, PolicyOutput(mean=torch.tanh(mean), log_std=log_std, log_prob=log_prob)

    def Q(self, z: torch.Tensor, a: torch.Tensor, return_type: QReturn = "min",
          target: bool = False, detach: bool = False) -> torch.Tensor:
        """State-action values from the ensemble.

        Args:
            z: latents [..., L]; a: actions [..., A].
            return_type: "all" -> logits of every member [num_q, ..., num_bins];
                "min"/"avg" -> min/mean over two randomly chosen members, decoded to [..., 1].
            target: use the Polyak-averaged target networks.
            detach: use detached online parameters (no gradient reaches the critics).
        """
        if return_type not in ("min", "avg", "all"):
            raise ValueError(f"Q return_type must be 'min', 'avg' or 'all', got {return_type!r}")
        za = torch.cat([z, a], dim=-1)
        net = self._target_Qs if target else self._Qs
        if return_type == "all":
            return net(za, detach=detach)
        # Two distinct members at random. (multinomial rather than randperm()[:2]: inductor's
        # randperm-index pattern fails to compile on CPU in torch 2.13.)
        members = torch.multinomial(torch.ones(self.cfg.num_q, device=z.device), 2)
        q = self.two_hot.decode(net(za, members=members, detach=detach))
        return q.min(dim=0).values if return_type == "min" else q.mean(dim=0)

    @torch.no_grad()
    def update_target_Q(self, tau: float | None = None) -> None:
        """Polyak update: target <- target + tau * (online - target)."""
        tau = self.cfg.tau if tau is None else tau
        torch._foreach_lerp_(list(self._target_Qs.parameters()), list(self._Qs.parameters()), tau)
