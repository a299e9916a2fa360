"""The observation/action contract shared by simulation, demo logs, checkpoints and the robot.

A contract names each observation feature with its shape (as LeRobot does), and fixes
the arm, the action size, control mode and control frequency. Every stage checks the contract
of what it loads against what it runs on, and a mismatch is reported field by field:
`obs_dim 42 in checkpoint, 39 in task`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

FEATURE_KINDS = ("state", "rgb")


class ContractMismatch(ValueError):
    """Two contracts disagree; the message lists every field that differs."""


@dataclass(frozen=True)
class Feature:
    """One named observation feature.

    Args:
        shape: per-step shape without the batch dim, e.g. (9,) or (3, 64, 64) (CHW).
        kind: "state" (flattened into the state vector) or "rgb" (uint8 image, CHW).
    """

    shape: tuple[int, ...]
    kind: str = "state"

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"Feature.kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if not self.shape or any(int(d) <= 0 for d in self.shape):
            raise ValueError(f"Feature.shape must be non-empty and positive, got {self.shape}")
        if self.kind == "rgb" and len(self.shape) != 3:
            raise ValueError(f"an rgb Feature has shape (C, H, W), got {self.shape}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Contract:
    """What a policy observes and commands.

    Args:
        features: observation features in a fixed order; state features are
            concatenated in this order to form the model's state vector.
        action_dim: size of the action vector (normalised to [-1, 1]).
        control_mode: e.g. "pd_ee_delta_pos" (end-effector delta position + gripper).
        control_freq: decisions per second (Hz).
        arm: the robot description the joints and actions belong to (configs/arm/<arm>.yaml).
            Checkpoints, datasets and bags carry it, so a policy learned on one arm is refused on
            another by name rather than by a shape that happens to differ.
    """

    features: Mapping[str, Feature]
    action_dim: int
    control_mode: str = "pd_ee_delta_pos"
    control_freq: float = 20.0
    arm: str = "panda"

    def __post_init__(self) -> None:
        if self.action_dim <= 0:
            raise ValueError(f"Contract.action_dim must be positive, got {self.action_dim}")
        if sum(f.kind == "rgb" for f in self.features.values()) > 1:
            raise ValueError("Contract supports at most one rgb feature")
        if not self.features:
            raise ValueError("Contract needs at least one observation feature")
        if not self.arm:
            raise ValueError("Contract.arm must name an arm (configs/arm/<arm>.yaml), got ''")

    @property
    def obs_dim(self) -> int:
        """Size of the flattened state vector."""
        return sum(f.size for f in self.features.values() if f.kind == "state")

    @property
    def rgb_shape(self) -> tuple[int, int, int] | None:
        for f in self.features.values():
            if f.kind == "rgb":
                return f.shape  # type: ignore[return-value]
        return None

    def model_obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input shapes of the world model's encoder: {"state": (D,), "rgb": (C, H, W)}."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.obs_dim:
            shapes["state"] = (self.obs_dim,)
        if self.rgb_shape is not None:
            shapes["rgb"] = self.rgb_shape
        return shapes

    def model_inputs(self, obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named features [B, *shape] -> encoder inputs {"state": [B, D], "rgb": [B, C, H, W]}.

        Raises a ValueError naming the feature if one is missing or has the wrong shape.
        """
        state_parts, out = [], {}
        for name, feature in self.features.items():
            if name not in obs:
                raise ValueError(f"observation is missing feature {name!r} (expected shape {feature.shape})")
            x = obs[name]
            if tuple(x.shape[1:]) != feature.shape:
                raise ValueError(f"observation feature {name!r} has shape {tuple(x.shape[1:])} per step, "
                                 f"expected {feature.shape}")
            if feature.kind == "rgb":
                out["rgb"] = x
            else:
                state_parts.append(x.reshape(x.shape[0], -1).float())
        if state_parts:
            out["state"] = torch.cat(state_parts, dim=-1)
        return out

    def mismatches(self, other: Contract, mine: str = "checkpoint", theirs: str = "task") -> list[str]:
        """Every difference between two contracts, each as one readable phrase."""
        problems = []
        if self.arm != other.arm:
            problems.append(f"arm {self.arm!r} in {mine}, {other.arm!r} in {theirs}")
        if self.obs_dim != other.obs_dim:
            problems.append(f"obs_dim {self.obs_dim} in {mine}, {other.obs_dim} in {theirs}")
        if self.action_dim != other.action_dim:
            problems.append(f"action_dim {self.action_dim} in {mine}, {other.action_dim} in {theirs}")
        if self.control_mode != other.control_mode:
            problems.append(f"control_mode {self.control_mode!r} in {mine}, {other.control_mode!r} in {theirs}")
        if not math.isclose(self.control_freq, other.control_freq, rel_tol=1e-6):
            problems.append(f"control_freq {self.control_freq:g} Hz in {mine}, {other.control_freq:g} Hz in {theirs}")
        for name in self.features:
            if name not in other.features:
                problems.append(f"feature {name!r} in {mine} but not in {theirs}")
            elif self.features[name] != other.features[name]:
                a, b = self.features[name], other.features[name]
                problems.append(f"feature {name!r} is {a.kind}{list(a.shape)} in {mine}, {b.kind}{list(b.shape)} in {theirs}")
        problems += [f"feature {n!r} in {theirs} but not in {mine}" for n in other.features if n not in self.features]
        if not problems and list(self.features) != list(other.features):
            problems.append(f"feature order {list(self.features)} in {mine}, {list(other.features)} in {theirs}")
        return problems

    def check(self, other: Contract, mine: str = "checkpoint", theirs: str = "task", source: str = "") -> None:
        """Raise ContractMismatch listing every difference, prefixed by `source` (e.g. a file path)."""
        problems = self.mismatches(other, mine, theirs)
        if problems:
            prefix = f"{source}: " if source else ""
            raise ContractMismatch(f"{prefix}contract mismatch: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so checkpoints load with torch.load(weights_only=True)."""
        return {
            "features": {n: {"shape": list(f.shape), "kind": f.kind} for n, f in self.features.items()},
            "action_dim": self.action_dim,
            "control_mode": self.control_mode,
            "control_freq": float(self.control_freq),
            "arm": self.arm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "contract") -> Contract:
        try:
            features = {
                str(n): Feature(shape=tuple(int(d) for d in f["shape"]), kind=str(f.get("kind", "state")))
                for n, f in data["features"].items()
            }
            # Contracts written before the arm was recorded all belong to the Panda, the only arm then.
            return cls(features=features, action_dim=int(data["action_dim"]),
                       control_mode=str(data["control_mode"]), control_freq=float(data["control_freq"]),
                       arm=str(data.get("arm", "panda")))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{source}: malformed contract ({type(err).__name__}: {err}); expected keys "
                             "features{name: {shape, kind}}, action_dim, control_mode, control_freq, arm") from err
