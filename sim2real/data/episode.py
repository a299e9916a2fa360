"""The canonical demonstration episode, whatever file format it came from.

Every reader (our HDF5, ManiSkill trajectories, LeRobot, rosbag2) yields `Episode`s and
every consumer (replay buffers, finetuning, inspection) takes them, so nothing here knows
about files: an episode is CPU tensors plus a few plain values.

An episode of T control steps holds T+1 observations (the initial one and one after each
action) and T actions; `success[t]` is the task's success flag at observation t, so
`success[0]` describes the initial state and `success[-1]` the final one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from sim2real.contract import Contract

# What each feature kind is stored as: state is exact float32, images are 8-bit.
KIND_DTYPES = {"state": torch.float32, "rgb": torch.uint8}


class DatasetError(RuntimeError):
    """Demonstration data cannot be used: unreadable, malformed, or not what the contract says."""


@dataclass
class Episode:
    """One demonstration.

    Attributes:
        obs: named features, each [T+1, *shape]: float32 for state, uint8 CHW for rgb.
        actions: [T, action_dim] float32, normalised to [-1, 1].
        success: [T+1] bool, the task's success flag at each observation.
        rewards: [T] float32 env rewards, for diagnosis only (stage 1 never learns from them).
        seed: the reset seed that reproduces the initial state, when known.
        meta: per-episode extras (plain JSON-able values, e.g. the domain draw of this env).
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    success: torch.Tensor
    rewards: torch.Tensor | None = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """T, the number of actions (control steps)."""
        return int(self.actions.shape[0])

    @property
    def success_once(self) -> bool:
        """Whether the task was solved at any observation."""
        return bool(self.success.any())

    @property
    def success_at_end(self) -> bool:
        """Whether the task is solved at the final observation."""
        return bool(self.success[-1])

    def validate(self, contract: Contract, where: str = "episode") -> None:
        """Raise DatasetError unless every tensor has the contract's shape and dtype.

        Args:
            contract: what the observations and actions must look like.
            where: prefix naming this episode in messages, e.g. "data/x.h5: episodes/000003";
                fields are appended to it ("…/obs/qpos").
        """
        _expect_tensor(self.actions, f"{where}/actions")
        if self.actions.dim() != 2 or self.actions.shape[1] != contract.action_dim:
            raise DatasetError(f"{where}/actions has shape {list(self.actions.shape)}, expected "
                               f"[T, {contract.action_dim}] (action_dim of {contract.control_mode})")
        steps = self.length
        if steps < 1:
            raise DatasetError(f"{where}/actions is empty: an episode needs at least one action")
        _expect_dtype(self.actions, torch.float32, f"{where}/actions")
        _expect_finite(self.actions, f"{where}/actions")

        for name, feature in contract.features.items():
            key = f"{where}/obs/{name}"
            expected = [steps + 1, *feature.shape]
            dtype = KIND_DTYPES[feature.kind]
            if name not in self.obs:
                raise DatasetError(f"{key} is missing (expected {expected} {_dtype_name(dtype)}, "
                                   f"{feature.kind} feature {name} {feature.shape})")
            x = self.obs[name]
            _expect_tensor(x, key)
            if list(x.shape) != expected:
                # The leading dim comes from the actions, so say so when that is what differs.
                hint = f"; the episode has T={steps} actions" if x.dim() > 0 and x.shape[0] != steps + 1 else ""
                raise DatasetError(f"{key} has shape {list(x.shape)}, expected {expected} "
                                   f"(T+1, {name} {feature.shape}){hint}")
            _expect_dtype(x, dtype, key, f"{feature.kind} feature")
            if feature.kind == "state":
                _expect_finite(x, key)
        extra = [n for n in self.obs if n not in contract.features]
        if extra:
            raise DatasetError(f"{where}/obs has features {extra} that the contract does not name "
                               f"(contract features: {list(contract.features)})")

        _expect_tensor(self.success, f"{where}/success")
        if list(self.success.shape) != [steps + 1]:
            raise DatasetError(f"{where}/success has shape {list(self.success.shape)}, expected [{steps + 1}] "
                               f"(T+1 with T={steps} actions)")
        _expect_dtype(self.success, torch.bool, f"{where}/success")
        if self.rewards is not None:
            _expect_tensor(self.rewards, f"{where}/rewards")
            if list(self.rewards.shape) != [steps]:
                raise DatasetError(f"{where}/rewards has shape {list(self.rewards.shape)}, expected [{steps}] "
                                   f"(T with T={steps} actions)")
            _expect_dtype(self.rewards, torch.float32, f"{where}/rewards")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _expect_tensor(x: Any, key: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise DatasetError(f"{key} is a {type(x).__name__}, expected a torch.Tensor")


def _expect_dtype(x: torch.Tensor, dtype: torch.dtype, key: str, what: str = "") -> None:
    if x.dtype != dtype:
        suffix = f" ({what})" if what else ""
        raise DatasetError(f"{key} has dtype {_dtype_name(x.dtype)}, expected {_dtype_name(dtype)}{suffix}")


def _expect_finite(x: torch.Tensor, key: str) -> None:
    # One NaN in a demo poisons every normalisation statistic and loss computed from it.
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise DatasetError(f"{key} contains NaN or inf (first at index {bad})")


class Moments:
    """Per-dimension count, mean, std, min and max of a stream of [N, D] batches.

    Batches merge by Chan et al.'s parallel update in float64, which stays accurate for
    features with a large mean and a tiny spread (where E[x^2] - E[x]^2 cancels).
    """

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self._m2 = torch.zeros(dim, dtype=torch.float64)
        self.min = torch.full((dim,), math.inf, dtype=torch.float64)
        self.max = torch.full((dim,), -math.inf, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().cpu().double().reshape(x.shape[0], -1)
        if x.shape[0] == 0:
            return
        n_b, mean_b = x.shape[0], x.mean(0)
        n = self.count + n_b
        delta = mean_b - self.mean
        self._m2 += (x - mean_b).pow(2).sum(0) + delta.pow(2) * (self.count * n_b / n)
        self.mean += delta * (n_b / n)
        self.count = n
        self.min = torch.minimum(self.min, x.min(0).values)
        self.max = torch.maximum(self.max, x.max(0).values)

    @property
    def std(self) -> torch.Tensor:
        """Population std (divides by the count)."""
        return (self._m2 / max(self.count, 1)).sqrt()


class EpisodeStats:
    """Running summary of a stream of episodes, for inspection tools.

    Episodes are added one at a time, so a dataset of camera images is summarised without
    holding it in memory.

    Args:
        contract: the features and action size every added episode has.

    Attributes:
        lengths: T of every episode, in order.
        dtypes: dtype name of each observation feature.
        actions: per-dimension moments of the actions.
        state: per-dimension moments of each state feature (flattened), over every observation.
    """

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.lengths: list[int] = []
        self.num_success_once = 0
        self.num_success_at_end = 0
        self.dtypes: dict[str, str] = {}
        self.actions = Moments(contract.action_dim)
        self.state = {name: Moments(f.size) for name, f in contract.features.items() if f.kind == "state"}

    @property
    def count(self) -> int:
        return len(self.lengths)

    def add(self, episode: Episode) -> None:
        self.lengths.append(episode.length)
        self.num_success_once += episode.success_once
        self.num_success_at_end += episode.success_at_end
        self.actions.add(episode.actions)
        for name, x in episode.obs.items():
            self.dtypes[name] = _dtype_name(x.dtype)
            if name in self.state:
                self.state[name].add(x)

    def success_once_rate(self) -> float:
        return self.num_success_once / self.count if self.count else math.nan

    def success_at_end_rate(self) -> float:
        return self.num_success_at_end / self.count if self.count else math.nan
