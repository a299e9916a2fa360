"""Network building blocks of the world model.

`NormedLinear` (Linear -> Dropout -> LayerNorm -> Mish) and `SimNorm` follow TD-MPC2.
`EnsembleMLP` replaces TD-MPC2's vmapped module list with stacked weights and batched
matmuls: the same maths, no functorch state to keep in sync, and cheaper on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SimNorm(nn.Module):
    """Simplicial normalisation: softmax within consecutive groups of `group_dim` features."""

    def __init__(self, group_dim: int) -> None:
        super().__init__()
        self.group_dim = group_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.view(*shape[:-1], shape[-1] // self.group_dim, self.group_dim)
        # Written out rather than F.softmax: with groups of 8, aten's CPU softmax kernel is
        # about 2x slower than these three ops, and this runs at every planning step.
        e = torch.exp(x - x.amax(dim=-1, keepdim=True))
        return (e / e.sum(dim=-1, keepdim=True)).view(shape)

    def extra_repr(self) -> str:
        return f"group_dim={self.group_dim}"


class NormedLinear(nn.Linear):
    """Linear -> (Dropout) -> LayerNorm -> activation (Mish unless another is given)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, act: nn.Module | None = None) -> None:
        super().__init__(in_dim, out_dim)
        self.ln = nn.LayerNorm(out_dim)
        self.act = act if act is not None else nn.Mish()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.act(self.ln(x))


def mlp(in_dim: int, hidden: list[int], out_dim: int, out_act: nn.Module | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """MLP of NormedLinear hidden layers.

    Args:
        in_dim: input features.
        hidden: hidden widths; dropout (if any) applies to the first hidden layer only.
        out_dim: output features.
        out_act: if given, the last layer is a NormedLinear with this activation
            (e.g. SimNorm for latents); otherwise a plain Linear (logits, means).
    """
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0) for i in range(len(hidden))
    ]
    layers.append(NormedLinear(dims[-1], out_dim, act=out_act) if out_act is not None else nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """`num_members` independent MLPs of identical shape evaluated in one batched pass.

    Hidden layers are Linear -> (Dropout on the first) -> LayerNorm -> Mish; the output
    layer is a plain Linear, zero-initialised when `zero_output=True` (TD-MPC2 starts its
    Q heads at zero so that early values decode to exactly 0).

    The forward pass can evaluate a subset of members (planning and TD targets only need
    two) and can use detached parameters (the policy update must not train the critics).
    """

    def __init__(self, num_members: int, in_dim: int, hidden: list[int], out_dim: int,
                 dropout: float = 0.0, zero_output: bool = True) -> None:
        super().__init__()
        if num_members < 1:
            raise ValueError(f"EnsembleMLP needs num_members >= 1, got {num_members}")
        self.num_members = num_members
        self.dropout = dropout
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(num_members, dims[i], dims[i + 1])) for i in range(len(dims) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(num_members, 1, dims[i + 1])) for i in range(len(dims) - 1)
        )
        self.ln_weights = nn.ParameterList(nn.Parameter(torch.ones(num_members, 1, h)) for h in hidden)
        self.ln_biases = nn.ParameterList(nn.Parameter(torch.zeros(num_members, 1, h)) for h in hidden)
        for w in self.weights:
            nn.init.trunc_normal_(w, std=0.02)
        if zero_output:
            nn.init.zeros_(self.weights[-1])

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None, detach: bool = False) -> torch.Tensor:
        """Evaluate the ensemble.

        Args:
            x: inputs [..., in_dim], shared by all members.
            members: optional indices of the members to evaluate (default: all).
            detach: use detached parameters, so no gradient reaches the ensemble.

        Returns:
            outputs [num_selected, ..., out_dim].
        """
        lead = x.shape[:-1]

        def take(p: torch.Tensor) -> torch.Tensor:
            p = p.detach() if detach else p
            return p if members is None else p.index_select(0, members)

        num_selected = self.num_members if members is None else members.numel()
        h = x.reshape(1, -1, x.shape[-1]).expand(num_selected, -1, -1)
        num_layers = len(self.weights)
        for i in range(num_layers):
            h = torch.baddbmm(take(self.biases[i]), h, take(self.weights[i]))
            if i < num_layers - 1:
                if i == 0 and self.dropout > 0:
                    h = F.dropout(h, self.dropout, self.training)
                h = F.layer_norm(h, h.shape[-1:])
                h = F.mish(h * take(self.ln_weights[i]) + take(self.ln_biases[i]))
        return h.view(h.shape[0], *lead, h.shape[-1])


class ShiftAug(nn.Module):
    """Random-shift augmentation for images (pad by `pad` pixels, random crop back).

    Applied only in training mode: acting and evaluation see the unshifted frame, so
    they are deterministic for a given observation.
    """

    def __init__(self, pad: int = 3) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.pad == 0:
            return x
        n, _, h, w = x.shape
        if h != w:
            raise ValueError(f"ShiftAug expects square images, got {h}x{w}")
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        eps = 1.0 / (h + 2 * self.pad)
        arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * self.pad, device=x.device, dtype=x.dtype)[:h]
        arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
        base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
        shift = torch.randint(0, 2 * self.pad + 1, size=(n, 1, 1, 2), device=x.device).to(x.dtype)
        shift *= 2.0 / (h + 2 * self.pad)
        return F.grid_sample(x, base_grid + shift, padding_mode="zeros", align_corners=False)


class PixelPreprocess(nn.Module):
    """uint8-range pixels -> floats in [-0.5, 0.5]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div(255.0).sub(0.5)


def conv_encoder(in_channels: int, num_channels: int, pad: int) -> nn.Sequential:
    """TD-MPC2's 4-layer conv stack for 64x64 frames (kernels 7/5/3/3, strides 2/2/2/1).

    Pixels are scaled before the shift so the augmentation interpolates floats, not uint8.
    """
    return nn.Sequential(
        PixelPreprocess(), ShiftAug(pad),
        nn.Conv2d(in_channels, num_channels, 7, stride=2), nn.ReLU(inplace=True),
        nn.Conv2d(num_channels, num_channels, 5, stride=2), nn.ReLU(inplace=True),
        nn.Conv2d(num_channels, num_channels, 3, stride=2), nn.ReLU(inplace=True),
        nn.Conv2d(num_channels, num_channels, 3, stride=1), nn.Flatten(),
    )


def conv_output_dim(conv: nn.Sequential, in_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(math.prod(conv(torch.zeros(1, *in_shape)).shape[1:]))


def init_weights(module: nn.Module) -> None:
    """TD-MPC2 init: truncated normal (std 0.02) for linear weights, zero biases, orthogonal convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, gain=nn.init.calculate_gain("relu"))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
