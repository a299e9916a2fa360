"""Faults between the simulated arm and the policy node, and an audit of every command sent.

The bridge must keep every command inside its limits when its inputs misbehave, and get back to
work when they stop misbehaving. The cases (benchmarks/faults.py prints one line for each):

  clean          no fault: the baseline.
  drop10         10% of joint states are lost (independently per message).
  stall          the joint-state stream stalls for 50-200 ms at random times, then the messages
                 held up arrive in a burst; only the last `SENSOR_DEPTH` survive, as with the
                 sensor-data QoS (best effort, keep-last 5). A 50 ms and a 200 ms stall are always
                 in the schedule (the ends of the range), the others are drawn from it.
  out_of_order   20% of joint states arrive 1-3 publish periods late, after newer ones, with
                 their older stamps.
  nan            10% of joint states carry NaN/inf in a position or velocity, and 10% of object
                 poses in a position or quaternion component.
  robot_restart  the arm goes away for 0.5-1.5 s (no messages; commands lost) and comes back as
                 a new `SimRobotCore`: the task's rest pose, no memory of earlier commands. It
                 hears commands 0.2 s before the node hears its joint states (discovery). A
                 driver restart (process start, DDS discovery) takes longer than the 0.5 s after
                 which the node restarts its safety filter (policy_node.RESYNC_AFTER_S).

Faults happen only in the fault window [`fault_start_s`, `duration_s - recovery_s`): a run
starts and ends clean. `FaultLink` is the faulty channel, `CommandAudit`
(robot_bridge.command_audit) checks commands against the limits with its own record of the
inputs (it never asks the filter), and `run_case` steps a `PolicyNodeCore` and a `SimRobotCore`
together in simulated time with a `FaultLink` between them: deterministic for a seed, and no DDS.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim2real.ros import messages as m
from sim2real.robot.arm_model import RobotModel
from robot_bridge.command_audit import CommandAudit
from robot_bridge.policies import ReachPolicy
from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams
from sim2real.contract import Contract, Feature

CASES = ("clean", "drop10", "stall", "out_of_order", "nan", "robot_restart")
SENSOR_DEPTH = 5  # QoS.SENSOR_DATA keep-last depth: what survives a stall
_TIME_TOL = 1e-6  # s: float64 resolves wall-clock times near 1.7e9 s to ~0.2 us


@dataclass(frozen=True)
class FaultConfig:
    """How hard each case hits, and when.

    Args:
        duration_s: simulated seconds of control per case.
        fault_start_s: clean start-up before the first fault.
        recovery_s: clean tail after the last fault (for a restart: after the arm is back).
        seed: the random draws of every case.
        drop_prob: drop10's loss probability.
        stall_s: range of stall lengths.
        stall_gap_s: range of the clean time between two stalls.
        reorder_prob: share of joint states out_of_order delays.
        reorder_steps: range (inclusive) of publish periods a late message is held back.
        nan_prob: share of joint states and of object poses the nan case corrupts.
        restart_down_s: range of the time the arm is away in robot_restart.
        restart_discovery_s: how long a restarted arm already receives commands before its joint
            states reach the node (DDS discovery matches the two directions independently).
    """

    duration_s: float = 6.0
    fault_start_s: float = 1.0
    recovery_s: float = 1.5
    seed: int = 0
    drop_prob: float = 0.1
    stall_s: tuple[float, float] = (0.05, 0.2)
    stall_gap_s: tuple[float, float] = (0.25, 0.5)
    reorder_prob: float = 0.2
    reorder_steps: tuple[int, int] = (1, 3)
    nan_prob: float = 0.1
    restart_down_s: tuple[float, float] = (0.5, 1.5)
    restart_discovery_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.fault_start_s < self.duration_s - self.recovery_s:
            raise ValueError(f"FaultConfig: expected 0 < fault_start_s ({self.fault_start_s}) < duration_s - "
                             f"recovery_s ({self.duration_s} - {self.recovery_s}): no room for faults")

    @property
    def fault_end_s(self) -> float:
        return self.duration_s - self.recovery_s


@dataclass
class FaultCounts:
    """What the link did to the messages it carried."""

    published: int = 0  # joint states the arm published
    delivered: int = 0  # joint states that reached the node
    dropped: int = 0  # joint states lost (drop10, stall overflow, arm away)
    delayed: int = 0  # joint states held back (stall burst, out_of_order)
    reordered: int = 0  # joint states delivered after a newer one
    nan_states: int = 0
    nan_poses: int = 0
    stalls: list[float] = field(default_factory=list)  # stall lengths (s)
    restarts: int = 0
    down_s: float = 0.0


@dataclass(order=True)
class _InFlight:
    due: float
    seq: int
    topic: str = field(compare=False)
    msg: Any = field(compare=False)
    stamp: float = field(compare=False)


class FaultLink:
    """The channel from the arm to the node: `send` what the arm publishes, `receive` what arrives.

    Args:
        case: one of CASES (robot_restart is the harness's business: the link stays clean).
        cfg: strengths and window.
        t0: the clock value the run starts at (fault times are relative to it).
        publish_period: the arm's joint-state period; out_of_order holds messages whole periods.
    """

    def __init__(self, case: str, cfg: FaultConfig, t0: float, publish_period: float = 0.01) -> None:
        if case not in CASES:
            raise ValueError(f"fault case {case!r}: expected one of {', '.join(CASES)}")
        self.case, self.cfg, self.t0, self.publish_period = case, cfg, t0, publish_period
        self.rng = np.random.default_rng([cfg.seed, CASES.index(case)])
        self.counts = FaultCounts()
        self._queue: list[_InFlight] = []
        self._seq = 0
        self._newest_delivered = -math.inf
        self._stall_buffer: deque[_InFlight] = deque()
        self.stalls = stall_schedule(self.rng, cfg) if case == "stall" else []  # (start, end) s from t0
        self.counts.stalls = [end - start for start, end in self.stalls]

    def faulty(self, t: float) -> bool:
        """Whether `t` is inside the fault window."""
        return self.cfg.fault_start_s <= t - self.t0 < self.cfg.fault_end_s

    def _stall_end(self, t: float) -> float | None:
        """When the stall `t` falls in ends (clock time), or None outside stalls."""
        rel = t - self.t0
        return next((self.t0 + end for start, end in self.stalls if start <= rel < end), None)

    def send(self, topic: str, msg: Any, t: float) -> None:
        """The arm published `msg` on `topic` ("joint_states" or "object_pose") at time t."""
        if topic == "joint_states":
            self.counts.published += 1
        stamp = m.stamp_to_seconds(msg.header.stamp)
        item = _InFlight(t, self._seq, topic, msg, stamp)
        self._seq += 1
        if not self.faulty(t):
            heapq.heappush(self._queue, item)
            return
        if topic == "object_pose":
            if self.case == "nan" and self.rng.random() < self.cfg.nan_prob:
                item.msg = corrupt_pose(msg, self.rng)
                self.counts.nan_poses += 1
            heapq.heappush(self._queue, item)
            return
        if self.case == "drop10" and self.rng.random() < self.cfg.drop_prob:
            self.counts.dropped += 1
            return
        stall_end = self._stall_end(t) if self.case == "stall" else None
        if stall_end is not None:
            item.due = stall_end
            self._stall_buffer.append(item)
            return
        if self.case == "out_of_order" and self.rng.random() < self.cfg.reorder_prob:
            lo, hi = self.cfg.reorder_steps
            item.due = t + int(self.rng.integers(lo, hi + 1)) * self.publish_period
            self.counts.delayed += 1
        if self.case == "nan" and self.rng.random() < self.cfg.nan_prob:
            item.msg = corrupt_joint_state(msg, self.rng)
            self.counts.nan_states += 1
        heapq.heappush(self._queue, item)

    def _release_stall(self, t: float) -> None:
        """At a stall's end the held-up messages go out; the sensor QoS keeps only the newest few."""
        if self._stall_buffer and self._stall_buffer[0].due <= t + _TIME_TOL:
            burst = list(self._stall_buffer)
            self._stall_buffer.clear()
            self.counts.dropped += max(0, len(burst) - SENSOR_DEPTH)
            for item in burst[-SENSOR_DEPTH:]:
                self.counts.delayed += 1
                heapq.heappush(self._queue, item)

    def receive(self, t: float) -> list[tuple[str, Any]]:
        """Messages that arrive by time t, in arrival order."""
        self._release_stall(t)
        out = []
        while self._queue and self._queue[0].due <= t + _TIME_TOL:
            item = heapq.heappop(self._queue)
            if item.topic == "joint_states":
                self.counts.delivered += 1
                if item.stamp < self._newest_delivered:
                    self.counts.reordered += 1
                self._newest_delivered = max(self._newest_delivered, item.stamp)
            out.append((item.topic, item.msg))
        return out

    def cut(self) -> None:
        """The arm went away: what it sent and nobody received yet is lost."""
        lost = [i for i in self._queue if i.topic == "joint_states"] + list(self._stall_buffer)
        self.counts.dropped += len(lost)
        self._queue.clear()
        self._stall_buffer.clear()


def stall_schedule(rng: np.random.Generator, cfg: FaultConfig) -> list[tuple[float, float]]:
    """Stalls (start, end) in s from the run's start, inside the fault window: gaps and lengths
    drawn from their ranges, the first two lengths pinned to the range's ends."""
    stalls: list[tuple[float, float]] = []
    t = cfg.fault_start_s + float(rng.uniform(*cfg.stall_gap_s))
    pinned = [cfg.stall_s[1], cfg.stall_s[0]]
    while True:
        length = pinned.pop(0) if pinned else float(rng.uniform(*cfg.stall_s))
        if t + length > cfg.fault_end_s:
            return stalls
        stalls.append((t, t + length))
        t += length + float(rng.uniform(*cfg.stall_gap_s))


def _bad_value(rng: np.random.Generator) -> float:
    return float(rng.choice([math.nan, math.inf, -math.inf]))


def corrupt_joint_state(msg: Any, rng: np.random.Generator) -> Any:
    """A copy of a JointState with one position or velocity replaced by NaN/inf."""
    position, velocity = np.array(msg.position, dtype=np.float64), np.array(msg.velocity, dtype=np.float64)
    target = position if velocity.size == 0 or rng.random() < 0.5 else velocity
    target[int(rng.integers(target.size))] = _bad_value(rng)
    return m.joint_state(list(msg.name), position, velocity, stamp=msg.header.stamp, frame_id=msg.header.frame_id)


def corrupt_pose(msg: Any, rng: np.random.Generator) -> Any:
    """A copy of a PoseStamped with one position or quaternion component replaced by NaN/inf."""
    p, o = msg.pose.position, msg.pose.orientation
    position, quat = np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])
    target = position if rng.random() < 0.5 else quat
    target[int(rng.integers(target.size))] = _bad_value(rng)
    return m.pose_stamped(msg.header.frame_id, position, quat, stamp=msg.header.stamp)


# ---- the in-process run ----------------------------------------------------------------------

STEP_S = 0.01  # the simulated arm's joint-state period (100 Hz) and the run's time step
T0 = 1.7e9  # simulated wall clock at the start: a realistic epoch, since stamps travel in the messages
# Task-frame reach targets (m) the policy alternates between; the arm starts near (0, 0, 0.15).
TARGETS = ((0.08, 0.10, 0.10), (-0.02, -0.12, 0.22))
SWITCH_S = 1.0  # the target changes this often in the fault window, and once more when it ends
RECOVERY_TICKS = 10  # the last control ticks `recovered` looks at (0.5 s at 20 Hz)
REACH_TOL_M = 0.02


class AlternatingReach(ReachPolicy):
    """The scripted reach with a target the run moves, so that faults hit an arm in motion.

    Its contract also observes the object pose, so pose faults hit an input the node needs. It
    counts the observations that reached it with NaN/inf inside (the node must never pass one on).
    """

    contract = Contract(features={**ReachPolicy.contract.features, "obj_pose": Feature((7,))}, action_dim=4,
                        control_mode="pd_ee_delta_pos", control_freq=20.0)

    def __init__(self) -> None:
        super().__init__(TARGETS[0])
        self.nonfinite = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.nonfinite += int(not all(np.all(np.isfinite(v)) for v in obs.values()))
        return super().act(obs)


def reach_target(rel: float, cfg: FaultConfig) -> np.ndarray:
    """The policy's target `rel` s into the run: alternating every SWITCH_S in the fault window,
    and switched once more when the window ends, so that recovering means moving."""
    switches = int(min(rel, cfg.fault_end_s) // SWITCH_S) + int(rel >= cfg.fault_end_s)
    return np.asarray(TARGETS[switches % 2], dtype=np.float64)


def restart_window(rng: np.random.Generator, cfg: FaultConfig) -> tuple[float, float]:
    """(gone, back) in s from the run's start: the arm is away for a draw from restart_down_s."""
    down = float(rng.uniform(*cfg.restart_down_s))
    last = cfg.fault_end_s - cfg.restart_discovery_s  # the node hears the new arm before the window ends
    gone = float(rng.uniform(cfg.fault_start_s, max(cfg.fault_start_s, last - down)))
    return gone, min(gone + down, last)


@dataclass
class Tick:
    """One control tick as the run saw it."""

    sent: bool  # a command message went out
    held: bool  # the filter held (watchdog, e-stop, rejected command, nothing computed)
    acted: bool  # the policy ran


@dataclass
class CaseResult:
    """One case's outcome: `case` to `recovered` are the benchmark's line, the rest explain it.

    `recovered` is true when (1) each of the last RECOVERY_TICKS control ticks sent a command the
    policy computed and the filter did not hold, and (2) at the end an arm is there and its TCP
    (the simulator's, not the node's estimate) is within REACH_TOL_M of the target the policy was
    given when the fault window ended; the target switches then, so the arm has to move ~0.27 m
    in the clean tail, which only happens when commands flow and the arm executes them.
    """

    case: str
    commands: int
    outside_limits: int
    watchdog_trips: int
    recovered: bool
    faults: FaultCounts
    node: dict[str, Any]  # PolicyNodeCore.status() at the end
    reach_error_m: float  # TCP to the final target at the end (inf: no arm)
    held_in_tail: int  # held or unsent ticks among the last RECOVERY_TICKS
    violations: list[str]  # the audit's first findings
    policy_nonfinite: int  # observations with NaN/inf the policy was given (must be 0)
    arm_rejected: int  # commands the arm(s) refused as malformed


def run_case(case: str, cfg: FaultConfig = FaultConfig(), task: str = "push_cube",
             domain: str = "source") -> CaseResult:
    """Step a and a `SimRobotCore` together in simulated time, `case`'s faults between.

    Every STEP_S the arm simulates and publishes a joint state and the object pose into the
    `FaultLink`; what arrives goes to the node (and to the audit's record); every control period
    the node ticks, its command is audited and, when an arm is there, executed. For
    robot_restart the arm is dropped for the restart window and then replaced by a new one,
    which executes commands `restart_discovery_s` before the node hears from it.

    Args:
        case: one of CASES.
        cfg: fault strengths, window and seed.
        task, domain: the simulated arm's task and configs/domain preset ("source": no sensor
            noise, so the audit compares against exact readings).
    """
    from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams

    model = RobotModel.from_urdf()
    policy = AlternatingReach()
    node = PolicyNodeCore(policy, PolicyNodeParams(policy="reach", reach_target=list(TARGETS[0]), goal_topic=""),
                          model)
    audit = CommandAudit(model, node.limits)
    link = FaultLink(case, cfg, T0, STEP_S)
    arm_params = SimRobotParams(task=task, domain=domain, seed=cfg.seed)
    arm: SimRobotCore | None = SimRobotCore(arm_params)
    gone, back = restart_window(link.rng, cfg) if case == "robot_restart" else (math.inf, math.inf)
    per_tick = round(node.period / STEP_S)
    heard = back + cfg.restart_discovery_s  # when the new arm's joint states start reaching the node
    arm_rejected, ticks = 0, []
    for k in range(1, round(cfg.duration_s / STEP_S) + 1):
        t, rel = T0 + k * STEP_S, k * STEP_S
        if arm is not None and gone <= rel < back:  # the arm's process died
            arm_rejected += arm.rejected
            arm = None
            link.cut()
            link.counts.down_s = back - gone
        elif arm is None and rel >= back:  # ... and was started again
            arm = SimRobotCore(arm_params)
            audit.new_arm()
            link.counts.restarts += 1
        if arm is not None:
            arm.advance(STEP_S)
            if not back <= rel < heard:
                link.send("joint_states", arm.joint_state_msg(t), t)
                link.send("object_pose", arm.object_pose_msg(t), t)
        for topic, msg in link.receive(t):
            if topic == "joint_states":
                audit.observe(msg, t)
                node.on_joint_state(msg, t, t)
            else:
                node.on_object_pose(msg, t)
        if k % per_tick == 0:
            policy.target = reach_target(rel, cfg)
            result = node.tick(t)
            if result.message is not None:
                audit.check(result.message, t)
                if arm is not None:
                    arm.on_trajectory(result.message)
            ticks.append(Tick(result.message is not None, result.command.held, result.action is not None))
    arm_rejected += arm.rejected if arm is not None else 0
    tail = ticks[-RECOVERY_TICKS:]
    held_in_tail = sum(not (tick.sent and tick.acted) or tick.held for tick in tail)
    reach = math.inf if arm is None else float(np.linalg.norm(arm.tcp_pose()[:3] - policy.target))
    return CaseResult(case, audit.commands, audit.outside, node.safety.counters.watchdog_trips,
                      held_in_tail == 0 and reach <= REACH_TOL_M, link.counts, node.status(), reach, held_in_tail,
                      audit.violations, policy.nonfinite, arm_rejected)


__all__ = ["CASES", "AlternatingReach", "CaseResult", "FaultConfig", "FaultCounts", "FaultLink", "corrupt_joint_state",
           "corrupt_pose", "reach_target", "restart_window", "run_case", "stall_schedule"]
