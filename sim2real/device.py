"""Device selection: CPU by default, CUDA when present; never a hard-coded `cuda:0`."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a torch.device.

    Args:
        spec: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N", or a torch.device.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={spec!r} was requested but CUDA is not available here; use device=auto or cpu")
    return device
