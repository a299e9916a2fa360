"""Domain shifts: the physical and sensing differences between two worlds.

`DomainParams` lists every shift a backend must apply (or refuse loudly). The Hydra
group `domain/` ships `source` (nominal) and `target` (a published shifted set); any
field can be overridden, e.g. `domain=target domain.friction_scale=0.5`.

Three shifts act on tensors alone and are implemented here once for every backend:
action latency (`ActionDelay`), and observation and action noise (`add_noise`). The
physical ones (friction, masses, damping, gains, object size, camera pose) and the spawn
regions' size are applied by each backend to its own scene.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from hydra.core.config_store import ConfigStore

SCALE_FIELDS = ("friction_scale", "object_mass_scale", "joint_damping_scale", "controller_gain_scale",
                "object_size_scale", "init_range_scale")
STD_FIELDS = ("obs_noise_std", "action_noise_std", "camera_pose_jitter")


@dataclass
class DomainRanges:
    """Uniform ranges [low, high] sampled per episode and per env when `randomize` is true."""

    friction_scale: list[float] = field(default_factory=lambda: [0.5, 1.5])
    object_mass_scale: list[float] = field(default_factory=lambda: [0.5, 2.0])
    joint_damping_scale: list[float] = field(default_factory=lambda: [0.7, 1.5])
    controller_gain_scale: list[float] = field(default_factory=lambda: [0.7, 1.3])
    object_size_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    action_latency_steps: list[int] = field(default_factory=lambda: [0, 2])
    obs_noise_std: list[float] = field(default_factory=lambda: [0.0, 0.01])
    action_noise_std: list[float] = field(default_factory=lambda: [0.0, 0.05])
    camera_pose_jitter: list[float] = field(default_factory=lambda: [0.0, 0.03])
    init_range_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class DomainParams:
    """One world's deviations from nominal.

    Args:
        name: domain name, recorded in datasets and checkpoints.
        friction_scale: multiplies every contact friction coefficient.
        object_mass_scale: multiplies the mass (and inertia) of manipulated objects.
        joint_damping_scale: multiplies the arm's joint damping.
        controller_gain_scale: multiplies the joint controller's stiffness and damping gains.
        action_latency_steps: the env executes the action issued this many control steps ago.
        obs_noise_std: std of Gaussian noise added to every state feature (its own units).
        action_noise_std: std of Gaussian noise added to the normalised action before clipping.
        object_size_scale: multiplies the size of manipulated objects.
        camera_pose_jitter: per-episode uniform offset (metres, per axis) of the camera
            position and of the point it looks at.
        init_range_scale: scales the x/y half-ranges of every spawn region (objects, goals,
            cabinet) about their centres; 1.5 = objects and goals start in a region 1.5x as wide.
        randomize: sample every field per episode and env from `ranges` instead.
        ranges: the randomisation ranges.
    """

    name: str = "source"
    friction_scale: float = 1.0
    object_mass_scale: float = 1.0
    joint_damping_scale: float = 1.0
    controller_gain_scale: float = 1.0
    action_latency_steps: int = 0
    obs_noise_std: float = 0.0
    action_noise_std: float = 0.0
    object_size_scale: float = 1.0
    camera_pose_jitter: float = 0.0
    init_range_scale: float = 1.0
    randomize: bool = False
    ranges: DomainRanges = field(default_factory=DomainRanges)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its valid range."""
        for name in SCALE_FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"domain.{name}={value}: a scale must be a finite number > 0")
        for name in STD_FIELDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"domain.{name}={value}: must be a finite number >= 0")
        if int(self.action_latency_steps) != self.action_latency_steps or self.action_latency_steps < 0:
            raise ValueError(f"domain.action_latency_steps={self.action_latency_steps}: must be an integer >= 0")
        for f in fields(DomainRanges):
            low_high = list(getattr(self.ranges, f.name))
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"domain.ranges.{f.name}={low_high}: expected [low, high] with low <= high")

    def values(self) -> dict[str, float | int]:
        """The shift values alone (no name, flags or ranges), e.g. for dataset metadata."""
        return {k: v for k, v in asdict(self).items() if k not in ("name", "randomize", "ranges")}

    def sample(self, num_envs: int, generator: torch.Generator | None = None) -> list[DomainParams]:
        """Per-env parameters for a new episode: copies of self, or draws from `ranges` if randomising."""
        if not self.randomize:
            return [self] * num_envs
        draws = []
        for _ in range(num_envs):
            values = {}
            for f in fields(DomainRanges):
                low, high = getattr(self.ranges, f.name)
                u = float(torch.rand((), generator=generator))
                values[f.name] = (int(low + math.floor(u * (high - low + 1))) if f.name == "action_latency_steps"
                                  else low + u * (high - low))
            draws.append(DomainParams(name=f"{self.name}~", randomize=False, ranges=self.ranges, **values))
        return draws


ConfigStore.instance().store(group="domain", name="schema", node=DomainParams)


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, std^2), or x itself when std is 0."""
    if std == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * noise


class ActionDelay:
    """Batched fixed delay: `step(a_t)` returns a_{t-k}, and the hold action for t < k.

    Args:
        steps: delay k in control steps (0 passes actions through): one int for every env,
            or a LongTensor [num_envs] of per-env delays (domain randomisation).
        num_envs: batch size.
        hold_action: action [A] executed before any delayed action is available (e.g.
            zero motion with the gripper unchanged); backends pass their own.
        max_steps: queue length, at least max(steps); set it to the randomisation range's
            upper end so that `set_steps` can change per-env delays between episodes.
    """

    def __init__(self, steps: int | torch.Tensor, num_envs: int, hold_action: torch.Tensor,
                 max_steps: int | None = None) -> None:
        self.num_envs = num_envs
        self.hold_action = hold_action
        steps_t = torch.as_tensor(steps, dtype=torch.long).expand(num_envs).clone()
        self.max_steps = int(max(int(steps_t.max()), max_steps or 0))
        self.steps = steps_t.to(hold_action.device)
        # queue[j] holds a_{t-K+j}: queue[-1] is the previous action, queue[0] the oldest.
        self.queue = hold_action.expand(self.max_steps, num_envs, -1).clone()

    def set_steps(self, steps: torch.Tensor, env_mask: torch.Tensor | None = None) -> None:
        """Change the delay of all envs (or those where env_mask [N] is True); call at reset."""
        steps = torch.as_tensor(steps, dtype=torch.long, device=self.steps.device)
        if int(steps.max()) > self.max_steps:
            raise ValueError(f"action_latency_steps={int(steps.max())} exceeds the queue length {self.max_steps}")
        if env_mask is None:
            self.steps[:] = steps
        else:
            self.steps[env_mask] = steps if steps.dim() == 0 else steps[env_mask]

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        """Refill the queue with the hold action, for all envs or where env_mask [N] is True."""
        if env_mask is None:
            self.queue[:] = self.hold_action
        else:
            self.queue[:, env_mask] = self.hold_action

    def step(self, action: torch.Tensor) -> torch.Tensor:
        if self.max_steps == 0:
            return action
        history = torch.cat([self.queue, action.unsqueeze(0)], dim=0)  # history[K] = a_t
        out = history[self.max_steps - self.steps, torch.arange(self.num_envs, device=action.device)]
        self.queue = history[1:]
        return out
