"""The safety filter's limits: `SafetyLimits` (joint position and velocity limits, a per-tick
step, a box the TCP must stay in, the watchdog timeout), built from the arm's chain with
conservative margins and overridable from parameters, but only tightened: a config that loosens
any URDF limit, or stretches the watchdog past `MAX_WATCHDOG_TIMEOUT`, is refused
(`SafetyConfigError`). The filter that applies them is robot_bridge.safety.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real.robot.arm_model import RobotModel

CONTROL_PERIOD = 1.0 / 20.0  # the tasks' control frequency (tasks.layout.CONTROL_FREQ)
ARM_POSITION_MARGIN = 0.05  # rad kept clear of each arm joint's URDF limits
VELOCITY_SCALE = 0.5  # fraction of the URDF velocity limits allowed
TRACKING_STEPS = 4.0  # arm targets stay within this many max_steps of the measured position
# Base frame (panda_link0; the table surface is z = 0 in the tasks' scenes). Covers every task's
# objects and goals; the floor keeps the TCP 1 cm above the table (the fingertips, ~8 mm below
# the TCP, just clear it). At 1.5 cm the push_cube expert, which pushes with the TCP at the
# cube's centre height (2 cm) under 5 mm sensor noise, was stopped at the floor and scored
# 2/6 through the node instead of 6/8.
WORKSPACE_LO = (0.25, -0.4, 0.01)
WORKSPACE_HI = (0.95, 0.4, 0.6)
WATCHDOG_PERIODS = 2
MAX_WATCHDOG_TIMEOUT = 0.5  # s; a longer watchdog is no watchdog on an arm moving at 1 rad/s


class SafetyConfigError(ValueError):
    """Safety limits that are malformed or looser than the robot's own limits."""


@dataclass(frozen=True)
class SafetyLimits:
    """Everything the filter enforces; one value per joint, in `joint_names` order.

    Args:
        joint_names: the commanded joints: every arm joint of the model, then any gripper joints.
        lower, upper: position limits (rad or m), inside the URDF's.
        velocity: velocity limits (per s), at most the URDF's.
        max_step: largest change of a target between two commands, at most velocity x period.
        max_tracking_error: largest distance of a target from the measured position.
        workspace_lo, workspace_hi: the box the TCP must stay in (m, base frame).
        control_period: seconds between commands.
        watchdog_periods: control periods without a fresh joint state before the filter holds.
    """

    joint_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    velocity: tuple[float, ...]
    max_step: tuple[float, ...]
    max_tracking_error: tuple[float, ...]
    workspace_lo: tuple[float, float, float] = WORKSPACE_LO
    workspace_hi: tuple[float, float, float] = WORKSPACE_HI
    control_period: float = CONTROL_PERIOD
    watchdog_periods: int = WATCHDOG_PERIODS

    @property
    def watchdog_timeout(self) -> float:
        return self.watchdog_periods * self.control_period

    @classmethod
    def from_model(cls, model: RobotModel, position_margin: float = ARM_POSITION_MARGIN,
                   velocity_scale: float = VELOCITY_SCALE, control_period: float = CONTROL_PERIOD,
                   include_gripper: bool = True, **overrides: Any) -> SafetyLimits:
        """Conservative limits from the URDF: arm joints `position_margin` inside their limits
        (fingers use their full travel: the gripper must close and open), `velocity_scale` of
        the velocity limits, one period of that velocity per tick. `overrides` replace fields
        (sequences in joint order, or {joint name: value} for the per-joint ones); the result
        is validated against the model."""
        urdf = _urdf_limits(model)
        names = model.joint_names + (tuple(model.gripper_limits) if include_gripper else ())
        margin = np.array([position_margin if n in model.joint_names else 0.0 for n in names])
        velocity = velocity_scale * np.array([urdf[n][2] for n in names])
        step = velocity * control_period
        tracking = np.array([TRACKING_STEPS * s if n in model.joint_names else urdf[n][1] - urdf[n][0]
                             for n, s in zip(names, step)])
        values: dict[str, Any] = dict(
            joint_names=names, lower=tuple(float(urdf[n][0] + m) for n, m in zip(names, margin)),
            upper=tuple(float(urdf[n][1] - m) for n, m in zip(names, margin)), velocity=tuple(map(float, velocity)),
            max_step=tuple(map(float, step)), max_tracking_error=tuple(map(float, tracking)),
            control_period=control_period)
        per_joint = ("lower", "upper", "velocity", "max_step", "max_tracking_error")
        for key, value in overrides.items():
            if key not in {f.name for f in dataclasses.fields(cls)}:
                fields = [f.name for f in dataclasses.fields(cls)]
                raise SafetyConfigError(f"unknown safety parameter {key!r}; expected position_margin, velocity_scale, "
                                        f"control_period, include_gripper or a field: {', '.join(fields)} (the "
                                        f"filter has no switch to disable it)")
            if key in per_joint:
                value = _per_joint(key, value, values[key], values["joint_names"])
            elif key in ("workspace_lo", "workspace_hi"):
                value = tuple(float(v) for v in value)
            elif key == "joint_names":
                value = tuple(value)
            values[key] = value
        limits = cls(**values)
        limits.validate(model)
        return limits

    @classmethod
    def from_params(cls, model: RobotModel, params: Mapping[str, Any]) -> SafetyLimits:
        """`from_model` driven by a parameter mapping (e.g. ROS parameters or a config node):
        `position_margin`, `velocity_scale`, `control_period`, `include_gripper`, and any field."""
        params = dict(params)
        build = {k: params.pop(k) for k in ("position_margin", "velocity_scale", "control_period",
                                            "include_gripper") if k in params}
        return cls.from_model(model, **build, **params)

    def loosened(self, other: SafetyLimits) -> list[str]:
        """The fields in which `other` is looser than these limits (a live change must be none)."""
        out = []
        pairs = {"lower": (other.lower, self.lower, -1), "upper": (other.upper, self.upper, 1),
                 "velocity": (other.velocity, self.velocity, 1), "max_step": (other.max_step, self.max_step, 1),
                 "max_tracking_error": (other.max_tracking_error, self.max_tracking_error, 1),
                 "workspace_lo": (other.workspace_lo, self.workspace_lo, -1),
                 "workspace_hi": (other.workspace_hi, self.workspace_hi, 1),
                 "watchdog_periods": ((other.watchdog_periods,), (self.watchdog_periods,), 1)}
        for name, (new, old, sign) in pairs.items():
            if len(new) != len(old) or any(sign * (n - o) > 1e-12 for n, o in zip(new, old)):
                out.append(name)
        if other.joint_names != self.joint_names or other.control_period != self.control_period:
            out.append("joint_names" if other.joint_names != self.joint_names else "control_period")
        return out

    def validate(self, model: RobotModel) -> None:
        """Raise SafetyConfigError unless these limits are well formed and no looser than the URDF's."""
        urdf = _urdf_limits(model)
        names = self.joint_names
        if len(set(names)) != len(names):
            raise SafetyConfigError(f"safety joint_names has duplicates: {list(names)}")
        unknown = [n for n in names if n not in urdf]
        if unknown:
            raise SafetyConfigError(f"safety joint_names: {unknown} are not joints of {model.source}")
        if tuple(n for n in names if n in model.joint_names) != model.joint_names:
            raise SafetyConfigError(f"safety joint_names must contain every arm joint in chain order "
                                    f"{list(model.joint_names)} (the workspace check needs them); got {list(names)}")
        for key in ("lower", "upper", "velocity", "max_step", "max_tracking_error"):
            values = getattr(self, key)
            if len(values) != len(names) or not all(math.isfinite(v) for v in values):
                raise SafetyConfigError(f"safety {key}: expected {len(names)} finite values, got {list(values)}")
        if not (math.isfinite(self.control_period) and self.control_period > 0):
            raise SafetyConfigError(f"safety control_period: expected > 0 s, got {self.control_period}")
        for i, n in enumerate(names):
            lo, hi, vel = urdf[n]
            checks = (("lower", self.lower[i] >= lo, f">= the URDF's {lo}"),
                      ("upper", self.upper[i] <= hi, f"<= the URDF's {hi}"),
                      ("upper", self.upper[i] > self.lower[i], f"> lower {self.lower[i]}"),
                      ("velocity", 0 < self.velocity[i] <= vel, f"in (0, URDF's {vel}]"),
                      ("max_step", 0 < self.max_step[i] <= vel * self.control_period,
                       f"in (0, URDF velocity x period = {vel * self.control_period:.6g}]"),
                      ("max_tracking_error", self.max_tracking_error[i] > 0, "> 0"))
            for key, ok, expected in checks:
                if not ok:
                    raise SafetyConfigError(f"safety {key} of {n}: expected {expected}, got "
                                            f"{getattr(self, key)[i]} (limits can only be tightened)")
        lo, hi = np.asarray(self.workspace_lo, float), np.asarray(self.workspace_hi, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
                                                        and np.all(lo < hi)):
            raise SafetyConfigError(f"safety workspace: expected finite lo < hi, 3 values each; got "
                                    f"lo={lo.tolist()}, hi={hi.tolist()}")
        if not (isinstance(self.watchdog_periods, int) and self.watchdog_periods >= 1
                and self.watchdog_timeout <= MAX_WATCHDOG_TIMEOUT):
            raise SafetyConfigError(f"safety watchdog_periods: expected an integer >= 1 with watchdog_periods x "
                                    f"control_period <= {MAX_WATCHDOG_TIMEOUT} s, got {self.watchdog_periods}")


def _urdf_limits(model: RobotModel) -> dict[str, tuple[float, float, float]]:
    limits = {n: (float(lo), float(hi), float(v))
              for n, lo, hi, v in zip(model.joint_names, model.lower, model.upper, model.velocity_limits)}
    limits.update({n: (g.lower, g.upper, g.velocity) for n, g in model.gripper_limits.items()})
    return limits


def _per_joint(key: str, value: Any, default: tuple[float, ...], names: tuple[str, ...]) -> tuple[float, ...]:
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise SafetyConfigError(f"safety {key}: unknown joints {sorted(unknown)}; expected some of {list(names)}")
        return tuple(float(value.get(n, d)) for n, d in zip(names, default))
    return tuple(float(v) for v in value)
