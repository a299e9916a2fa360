"""The safety filter every joint command passes through before it reaches the arm.

The limits are robot_bridge.safety_limits' `SafetyLimits`: built from the arm's chain, only
ever tightened by parameters. There is deliberately no switch that disables the filter.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from robot_bridge.safety_limits import SafetyConfigError, SafetyLimits
from sim2real.robot.arm_model import RobotModel

_BISECTIONS = 12  # workspace scaling resolves the step to 1/4096 of its length

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
        limits = limits if limits is not None else SafetyLimits.from_model(model)
        limits.validate(model)
        self.names = limits.joint_names
        self._index = {n: i for i, n in enumerate(self.names)}
        self._arm = np.array([self._index[n] for n in model.joint_names])
        self._enforce(limits)
        self.counters = SafetyCounters()
        self.measured: np.ndarray | None = None
        self.last_safe: np.ndarray | None = None
        self._state_stamp = -math.inf
        self._last_time: float | None = None
        self._estop = False
        self._tripped = False

    def tighten(self, limits: SafetyLimits) -> None:
        """Enforce `limits` from the next command on, keeping the filter's state (reference
        position, e-stop latch, counters).

        Raises:
            SafetyConfigError: `limits` are malformed, or looser than the current ones in any field.
        """
        limits.validate(self.model)
        looser = self.limits.loosened(limits)
        if looser:
            raise SafetyConfigError(f"safety limits may only be tightened while running; looser: {', '.join(looser)}")
        self._enforce(limits)

    def _enforce(self, limits: SafetyLimits) -> None:
        """`limits` and their arrays, as every check reads them."""
        self.limits = limits
        self._lower, self._upper = np.array(limits.lower), np.array(limits.upper)
        self._velocity, self._max_step = np.array(limits.velocity), np.array(limits.max_step)
        self._tracking = np.array(limits.max_tracking_error)
        self._box_lo, self._box_hi = np.array(limits.workspace_lo), np.array(limits.workspace_hi)

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
