"""Running scale of Q values, used to normalise the policy-prior loss (TD-MPC2)."""

from __future__ import annotations

import torch
from torch import nn


class RunningScale(nn.Module):
    """EMA of the 5-95 percentile range of Q values, floored at 1.

    Dividing Q by this scale keeps the policy loss on a similar footing across tasks
    whose returns differ by orders of magnitude. Kept as buffers so checkpoints carry it.
    """

    def __init__(self, tau: float = 0.01) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, q: torch.Tensor) -> None:
        q = q.detach().flatten().float()
        lo, hi = torch.quantile(q, torch.tensor([0.05, 0.95], device=q.device, dtype=q.dtype))
        new = torch.clamp(hi - lo, min=1.0)
        if bool(self.initialized):
            self.value.lerp_(new.to(self.value.dtype), self.tau)
        else:
            self.value.copy_(new)
            self.initialized.fill_(True)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q / self.value
