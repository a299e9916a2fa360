"""Two-hot discrete regression in symlog space (TD-MPC2's value parameterisation).

Values are squashed with symlog, clamped to [vmin, vmax] and spread over `num_bins`
evenly spaced bins. Predictions are logits over those bins; decoding takes the
softmax expectation and maps it back with symexp. Regressing a categorical
distribution instead of a scalar keeps gradients well scaled whatever the size of
the returns, which is why the reward-free objectives train their critics this way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


@dataclass(frozen=True)
class TwoHot:
    """Bins of a two-hot regression head.

    Args:
        num_bins: number of bins (TD-MPC2: 101).
        vmin: lowest bin centre, in symlog space.
        vmax: highest bin centre, in symlog space.
    """

    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0

    def __post_init__(self) -> None:
        if self.num_bins < 2:
            raise ValueError(f"TwoHot.num_bins must be >= 2, got {self.num_bins}")
        if not self.vmax > self.vmin:
            raise ValueError(f"TwoHot needs vmax > vmin, got vmin={self.vmin} vmax={self.vmax}")

    @property
    def bin_size(self) -> float:
        return (self.vmax - self.vmin) / (self.num_bins - 1)

    def bins(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.linspace(self.vmin, self.vmax, self.num_bins, device=device, dtype=dtype)

    def _position(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scalars [..., 1] -> index of the lower bin [...] (long) and the upper bin's weight [...]."""
        if x.shape[-1] != 1:
            raise ValueError(f"TwoHot expects a trailing dim of 1, got shape {tuple(x.shape)}")
        x = symlog(x.squeeze(-1)).clamp(self.vmin, self.vmax)
        pos = (x - self.vmin) / self.bin_size
        lower = pos.floor().clamp(max=self.num_bins - 2)
        return lower.long(), pos - lower

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scalars [..., 1] -> two-hot targets [..., num_bins] (rows sum to one)."""
        lower, upper_weight = self._position(x)
        bins = torch.arange(self.num_bins, device=x.device)
        lower = lower.unsqueeze(-1)
        return ((bins == lower) * (1.0 - upper_weight).unsqueeze(-1)
                + (bins == lower + 1) * upper_weight.unsqueeze(-1)).to(x.dtype)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., num_bins] -> scalars [..., 1]."""
        probs = F.softmax(logits, dim=-1)
        expected = (probs * self.bins(logits.device, logits.dtype)).sum(-1, keepdim=True)
        return symexp(expected)

    def soft_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between predicted logits [..., num_bins] and scalar targets [..., 1].

        Returns the per-sample loss with shape [..., 1]. The two-hot target has two non-zero
        entries, so the loss reads the two log-probabilities it weights instead of building
        the dense target: a gather, where a scatter into [..., num_bins] zeros led the
        stage-1 update's CPU profile.
        """
        log_probs = F.log_softmax(logits, dim=-1)
        lower, upper_weight = self._position(target)
        lower = lower.expand(log_probs.shape[:-1]).unsqueeze(-1)
        upper_weight = upper_weight.expand(log_probs.shape[:-1]).unsqueeze(-1)
        pair = log_probs.gather(-1, torch.cat([lower, lower + 1], dim=-1))
        return -((1.0 - upper_weight) * pair[..., :1] + upper_weight * pair[..., 1:])
