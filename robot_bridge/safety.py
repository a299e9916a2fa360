"""The safety filter every joint command passes through before it reaches the arm.

`SafetyLimits` holds the limits: joint position and velocity limits, a per-tick step, a box
the TCP must stay in, the watchdog timeout. They are built from the URDF (`RobotModel`) with
conservative margins and can be overridden from parameters, but only tightened: a config
that loosens any URDF limit, or stretches the watchdog past `MAX_WATCHDOG_TIMEOUT`, is
refused. There is deliberately no switch that disables the filter.

`SafetyFilter.send(command, now)` returns what was actually sent, the reasons for any change
and running counters. In order, a command is:
  held      while the e-stop is latched, while the watchdog is tripped (no fresh joint state
            for `watchdog_periods` periods), when `now` does not advance, and when it has the
            wrong length or any NaN/inf (rejected);
  clamped   to the position limits, then to `max_step` and `velocity x elapsed` around the last
            command sent, then towards the measured position (at most `max_tracking_error`
            away, so targets cannot run off from an arm that is blocked);
  scaled    back along the step until the TCP (by forward kinematics) is inside the workspace
            box; the arm holds when no part of the step stays inside.
"Hold" means re-sending the last command that passed (the last safe position).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
_BISECTIONS = 12  # workspace scaling resolves the step to 1/4096 of its length


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


@dataclass
class SafetyCounters:
    """Running totals since the filter started."""

    commands: int = 0
    clamped: int = 0  # commands changed by a limit, step, tracking or workspace clamp
    rejected: int = 0  # commands refused (wrong length, NaN/inf, time not advancing)
    held: int = 0  # commands answered by holding the last safe position
    watchdog_trips: int = 0
    estops: int = 0
    states_rejected: int = 0


@dataclass(frozen=True)
class SafeCommand:
    """What `send` did: `positions` were sent (joint_names order), or None when nothing could be
    (no joint state received yet)."""

    positions: np.ndarray | None
    joint_names: tuple[str, ...]
    held: bool
    reasons: list[str]
    counters: SafetyCounters
    estop: bool
    watchdog_tripped: bool

    @property
    def sent(self) -> bool:
        return self.positions is not None


@dataclass(frozen=True)
class StateCheck:
    accepted: bool
    reasons: list[str] = field(default_factory=list)


class SafetyFilter:
    """Limits, watchdog and e-stop between a policy and the arm (see the module docstring).

    Args:
        model: the arm's kinematics (FK for the workspace box; URDF limits to validate against).
        limits: what to enforce; default `SafetyLimits.from_model(model)`. Validated here too,
            so hand-built limits cannot loosen the URDF's either.
    """

    def __init__(self, model: RobotModel, limits: SafetyLimits | None = None) -> None:
        self.model = model
        self.limits = limits if limits is not None else SafetyLimits.from_model(model)
        self.limits.validate(model)
        lim = self.limits
        self.names = lim.joint_names
        self._index = {n: i for i, n in enumerate(self.names)}
        self._arm = np.array([self._index[n] for n in model.joint_names])
        self._lower, self._upper = np.array(lim.lower), np.array(lim.upper)
        self._velocity, self._max_step = np.array(lim.velocity), np.array(lim.max_step)
        self._tracking = np.array(lim.max_tracking_error)
        self._box_lo, self._box_hi = np.array(lim.workspace_lo), np.array(lim.workspace_hi)
        self.counters = SafetyCounters()
        self.measured: np.ndarray | None = None
        self.last_safe: np.ndarray | None = None
        self._state_stamp = -math.inf
        self._last_time: float | None = None
        self._estop = False
        self._tripped = False

    # ---- inputs ----------------------------------------------------------------------------
    def on_joint_state(self, names: Sequence[str], positions: Sequence[float] | np.ndarray, stamp: float,
                       now: float | None = None) -> StateCheck:
        """Take a joint state (any joint order; `stamp` in seconds on the clock `send` uses).

        Rejected, with reasons, when names are unknown, missing or repeated, lengths differ, a
        position is NaN/inf, or the stamp is not newer than the last accepted one (or, given
        `now`, older than the watchdog timeout).
        """
        reasons = []
        names = list(names)
        q = np.asarray(positions, dtype=np.float64).reshape(-1)
        if len(names) != q.size:
            reasons.append(f"joint state has {len(names)} names but {q.size} positions")
        if len(set(names)) != len(names):
            reasons.append(f"joint state repeats names: {sorted({n for n in names if names.count(n) > 1})}")
        unknown = [n for n in names if n not in self._index]
        if unknown:
            reasons.append(f"joint state has unknown joints {unknown}; expected {list(self.names)}")
        missing = [n for n in self.names if n not in names]
        if missing:
            reasons.append(f"joint state lacks joints {missing}")
        if not reasons and not np.all(np.isfinite(q)):
            bad = [n for n, v in zip(names, q) if not np.isfinite(v)]
            reasons.append(f"joint state has NaN/inf positions for {bad}")
        if not math.isfinite(stamp):
            reasons.append(f"joint state stamp {stamp} is not finite")
        elif stamp <= self._state_stamp:
            reasons.append(f"stale joint state: stamp {stamp:.6f} s is not after the last accepted "
                           f"{self._state_stamp:.6f} s")
        elif now is not None and now - stamp > self.limits.watchdog_timeout:
            reasons.append(f"stale joint state: {now - stamp:.3f} s old (watchdog timeout "
                           f"{self.limits.watchdog_timeout:.3f} s)")
        if reasons:
            self.counters.states_rejected += 1
            return StateCheck(False, reasons)
        ordered = np.empty(len(self.names))
        ordered[[self._index[n] for n in names]] = q
        self.measured = ordered
        self._state_stamp = float(stamp)
        if self.last_safe is None:
            self.last_safe = ordered.copy()
        return StateCheck(True)

    def estop(self, engaged: bool = True) -> None:
        """Latch the e-stop. `False` does nothing: only `reset_estop()` clears a latched e-stop."""
        if engaged and not self._estop:
            self._estop = True
            self.counters.estops += 1

    def reset_estop(self) -> None:
        """Clear the e-stop (an explicit operator action)."""
        self._estop = False

    @property
    def estopped(self) -> bool:
        return self._estop

    # ---- the filter ------------------------------------------------------------------------
    def send(self, command: Sequence[float] | np.ndarray, now: float) -> SafeCommand:
        """Filter one command (targets in `joint_names` order) at time `now` (s); see the module docstring."""
        self.counters.commands += 1
        if self.measured is None or self.last_safe is None:
            return self._result(None, True, ["no joint state received yet: nothing sent"])
        age = now - self._state_stamp
        if math.isfinite(age) and age > self.limits.watchdog_timeout:
            if not self._tripped:
                self.counters.watchdog_trips += 1
            self._tripped = True
        else:
            self._tripped = False
        if self._estop:
            return self._hold(["e-stop latched: holding (reset_estop() to resume)"], now)
        if self._tripped:
            return self._hold([f"watchdog: no fresh joint state for {age:.3f} s "
                               f"(> {self.limits.watchdog_timeout:.3f} s): holding"], now)
        if not math.isfinite(now) or (self._last_time is not None and now <= self._last_time):
            return self._hold([f"time {now} does not advance past the last command's {self._last_time}"],
                              now, rejected=True)
        target = np.asarray(command, dtype=np.float64).reshape(-1)
        if target.shape != (len(self.names),):
            return self._hold([f"command has {target.size} values, expected {len(self.names)} "
                               f"({', '.join(self.names)})"], now, rejected=True)
        if not np.all(np.isfinite(target)):
            bad = [n for n, v in zip(self.names, target) if not np.isfinite(v)]
            return self._hold([f"command has NaN/inf for {bad}: rejected"], now, rejected=True)
        reasons: list[str] = []
        safe = self._clamp(target, now, reasons)
        safe = self._workspace(safe, reasons)
        if reasons:
            self.counters.clamped += 1
        self.last_safe, self._last_time = safe, now
        return self._result(safe.copy(), False, reasons)

    def _clamp(self, target: np.ndarray, now: float, reasons: list[str]) -> np.ndarray:
        ref, measured = self.last_safe, self.measured
        assert ref is not None and measured is not None
        limited = np.clip(target, self._lower, self._upper)
        self._note(reasons, "position limit", target, limited)
        elapsed = self.limits.control_period if self._last_time is None else now - self._last_time
        step = np.minimum(self._max_step, self._velocity * elapsed)
        lo, hi = np.maximum(self._lower, ref - step), np.minimum(self._upper, ref + step)
        # A reference outside the position limits (an arm that started there) moves back one
        # step at a time: the step bound wins.
        outside = lo > hi
        lo, hi = np.where(outside, ref - step, lo), np.where(outside, ref + step, hi)
        stepped = np.clip(limited, lo, hi)
        arm = self._arm
        if np.all((ref[arm] >= self._lower[arm]) & (ref[arm] <= self._upper[arm])):
            # The arm's step is scaled as a whole, not clipped joint by joint: clipping each
            # joint on its own bends the motion (a level TCP step turned downward and pinned
            # the pushing gripper to the workspace floor: push_cube expert 0/6 through the node).
            delta = limited[arm] - ref[arm]
            room = np.where(delta > 0, hi[arm] - ref[arm], lo[arm] - ref[arm])
            moving = np.abs(delta) > 1e-12
            scale = float(np.min(room[moving] / delta[moving], initial=1.0)) if moving.any() else 1.0
            stepped[arm] = ref[arm] + min(max(scale, 0.0), 1.0) * delta
        self._note(reasons, "step/velocity limit", limited, stepped)
        track_lo, track_hi = np.maximum(lo, measured - self._tracking), np.minimum(hi, measured + self._tracking)
        tracked = np.where(track_lo <= track_hi, np.clip(stepped, track_lo, track_hi), np.clip(measured, lo, hi))
        self._note(reasons, "tracking error limit", stepped, tracked)
        return tracked

    def _inside(self, q: np.ndarray) -> bool:
        _, pos = self.model.fk_matrix(q[self._arm])
        return bool(np.all(pos >= self._box_lo) and np.all(pos <= self._box_hi))

    def _workspace(self, target: np.ndarray, reasons: list[str]) -> np.ndarray:
        if self._inside(target):
            return target
        ref = self.last_safe
        assert ref is not None
        held = target.copy()
        held[self._arm] = ref[self._arm]
        if not self._inside(held):
            reasons.append("workspace: the last safe TCP position is outside the box: arm held")
            return held
        # The largest fraction of the arm's step whose TCP stays inside, by bisection (inside at 0).
        inside, outside = 0.0, 1.0
        for _ in range(_BISECTIONS):
            mid = 0.5 * (inside + outside)
            trial = held.copy()
            trial[self._arm] += mid * (target[self._arm] - ref[self._arm])
            if self._inside(trial):
                inside = mid
            else:
                outside = mid
        result = held.copy()
        result[self._arm] += inside * (target[self._arm] - ref[self._arm])
        _, pos = self.model.fk_matrix(target[self._arm])
        reasons.append(f"workspace: TCP target {np.round(pos, 4).tolist()} outside the box; "
                       f"step scaled to {inside:.1%}" + (" (arm held)" if inside == 0.0 else ""))
        return result

    def _note(self, reasons: list[str], what: str, before: np.ndarray, after: np.ndarray) -> None:
        changed = np.abs(after - before) > 1e-12
        if changed.any():
            reasons.append(f"{what}: {[n for n, c in zip(self.names, changed) if c]}")

    def _hold(self, reasons: list[str], now: float, rejected: bool = False) -> SafeCommand:
        self.counters.held += 1
        self.counters.rejected += int(rejected)
        if math.isfinite(now) and (self._last_time is None or now > self._last_time):
            self._last_time = now
        assert self.last_safe is not None
        return self._result(self.last_safe.copy(), True, reasons)

    def _result(self, positions: np.ndarray | None, held: bool, reasons: list[str]) -> SafeCommand:
        return SafeCommand(positions, self.names, held, reasons, dataclasses.replace(self.counters),
                           self._estop, self._tripped)
