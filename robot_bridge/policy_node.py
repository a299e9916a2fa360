"""The policy node: topics -> the checkpoint's observation -> planner at control rate -> safe joint commands.

    sim2real-policy-node --ros-args -p checkpoint:=outputs/.../last.pt -p command_interface:=trajectory

Per control tick (the contract's frequency, 20 Hz): the latest accepted inputs become the
contract's observation (sim2real.ros.observation), the policy acts, the action becomes joint
targets (`pd_ee_delta_pos`: damped least-squares IK from the measured joints, holding the TCP
orientation of the episode's start as the MuJoCo backend does; `pd_joint_delta_pos`: measured
joints + the arm's joint_delta x action), and every target goes through `SafetyFilter.send`: the only way a
command message is built here is from what the filter returned. When no observation can be
made (stale or missing input) the filter is asked to hold; while its watchdog is tripped (no
fresh joint state) nothing is published. Joint states that resume after more than
`RESYNC_AFTER_S` restart the filter from the arm's position (the arm may have been restarted).
Ticks that finish after their deadline (one period after they were due) count as overruns.

Inputs the filter or the assembler reject (unknown or missing joints, wrong lengths, NaN,
stale stamps, poses in an unknown frame) are counted and logged, and the node keeps going. At
start-up the node waits `startup_timeout_s` for every input the contract needs and refuses to
start, naming what is missing, when the first joint state lacks a contract joint or an input
never arrives.

Every tick the policy acts, `action_topic` (`~/action` by default) gets the action it decided
before the safety filter (`std_msgs/Float64MultiArray`, sim2real.ros.policy_action):
the normalised action, whether the filter changed or held the command, the stamps of the joint
state and of every other input the action was computed from, and the count of decisions since
the policy's last reset. Recorded beside the commands, it lets a demo reader learn what the
demonstrator meant, observed as the node observed it, instead of what the filter let through.

Topics besides the inputs and the command: `estop_topic` (`std_msgs/Bool`, true latches the
e-stop), `~/reset_estop` (`Bool` true clears it), `~/reset` (`Bool` true: a new episode; also
`episode_topic`, an `Int32` whose value changes), `~/status` (`String`, JSON counters at ~1 Hz).

`PolicyNodeCore` is all of this without DDS (feed messages, `tick(now)`); `run_policy_node`
(robot_bridge.policy_loop) wires it to a transport with a rate loop; the policies themselves
are in robot_bridge.policies.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real.ros import messages as m
from sim2real.ros import policy_action as pa
from sim2real.robot.arm_model import (
    ActionScales, action_dim, ee_delta_action_to_joint_targets, joint_delta_action_to_joint_targets,
)
from sim2real.robot.description import load_arm
from sim2real.robot.kinematics import KinematicChain
from sim2real.ros.frames import Frames, base_in_task_or_default
from sim2real.ros.observation import ObservationAssembler
from robot_bridge.policies import CheckpointPolicy, ExpertPolicy, Policy, ReachPolicy, make_policy
from robot_bridge.policy_params import NODE_NAME, PolicyNodeParams, policy_node_params
from robot_bridge.safety import SafeCommand, SafetyFilter
from robot_bridge.safety_limits import SafetyLimits
from sim2real.contract import ContractMismatch

CONTROL_MODES = ("pd_ee_delta_pos", "pd_joint_delta_pos")
# Joint states that resume after a longer gap may come from a restarted arm, whose new controller
# holds wherever the arm is, not the last command: stepping from that command would jump. The
# safety filter then starts again from the arm's position. An arm held that long has settled
# (within ~5 mrad in the simulated Panda), so for the same arm the reference barely moves.
RESYNC_AFTER_S = 0.5
log = logging.getLogger(NODE_NAME)


@dataclass
class TickResult:
    """One control tick.

    Attributes:
        command: what the safety filter let through (its `positions` None: nothing could be sent).
        message: the ROS command message built from `command` (None when nothing is sent).
        action: the policy's action, or None when it did not run.
        intent: the `~/action` message of `action` (None when the policy did not run).
        reasons: why the policy did not run, and what the filter changed or held.
        compute_s: time the tick took.
        overrun: the tick finished after its deadline.
    """

    command: SafeCommand
    message: Any | None
    action: np.ndarray | None
    intent: Any | None
    reasons: list[str]
    compute_s: float
    overrun: bool


class _Throttle:
    """Log a repeated warning at most once per `period_s` per key, with how often it happened."""

    def __init__(self, period_s: float = 2.0) -> None:
        self.period_s = period_s
        self.last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        last, count = self.last.get(key, (-math.inf, 0))
        if now - last >= self.period_s:
            log.warning("%s%s", text, f" (x{count + 1} since the last report)" if count else "")
            self.last[key] = (now, 0)
        else:
            self.last[key] = (last, count + 1)


class PolicyNodeCore:
    """Observation assembly, policy, action conversion, safety filter and counters, without DDS.

    Args:
        policy: the policy (its contract decides the features, control mode and rate).
        params: the node's parameters.
        model: the arm's kinematics; default: the chain of `params.arm`'s description (configs/arm/),
            read from `params.urdf` when that is set.
        timer: monotonic clock for compute times (injectable for tests).

    Raises:
        ContractMismatch: the contract cannot be met with these inputs (see ObservationAssembler).
        ValueError: unsupported control mode or action size, or bad controller joints.
    """

    def __init__(self, policy: Policy, params: PolicyNodeParams, model: KinematicChain | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        contract = policy.contract
        if contract.arm != params.arm:
            raise ContractMismatch(f"contract mismatch: arm {contract.arm!r} in checkpoint, {params.arm!r} on the "
                                   "robot (parameter arm): a policy drives only the arm it was trained for")
        if contract.control_mode not in CONTROL_MODES:
            raise ContractMismatch(f"the checkpoint's control_mode {contract.control_mode!r} is not one the bridge "
                                   f"converts ({', '.join(CONTROL_MODES)})")
        # Everything arm-specific comes from the description: chain, joint names, gripper mapping,
        # action scales and which IK the arm can do (configs/arm/<arm>.yaml).
        # A `urdf` parameter replaces the description's file only: its limits and TCP still apply.
        self.arm = load_arm(params.arm, urdf=params.urdf or None)
        if model is None:
            model = self.arm.chain
        if contract.control_mode not in self.arm.control.modes:
            raise ContractMismatch(f"the checkpoint's control_mode {contract.control_mode!r} is not one arm "
                                   f"{params.arm!r} is driven with ({', '.join(self.arm.control.modes)}; "
                                   f"{self.arm.source})")
        self.model = model
        self.joint_names = model.joint_names + tuple(model.gripper_limits)
        self.scales = ActionScales.for_arm(self.arm)
        expected = action_dim(model, contract.control_mode)
        if contract.action_dim != expected:
            raise ContractMismatch(f"the checkpoint's action_dim {contract.action_dim} does not fit "
                                   f"{contract.control_mode} on arm {params.arm!r} ({expected})")
        self.policy, self.params, self.contract, self.timer = policy, params, contract, timer
        self.period = 1.0 / contract.control_freq
        self.limits = SafetyLimits.from_params(self.model, {"control_period": self.period, **params.safety})
        if self.limits.joint_names != self.joint_names:
            raise ValueError(f"safety joint_names must be {list(self.joint_names)} (arm and gripper); got "
                             f"{list(self.limits.joint_names)}")
        self.safety = SafetyFilter(self.model, self.limits)
        self.controller_joints = list(params.controller_joints) or list(self.joint_names)
        if any(n not in self.joint_names for n in self.controller_joints) or \
                len(set(self.controller_joints)) != len(self.controller_joints):
            raise ValueError(f"parameter controller_joints={self.controller_joints}: expected distinct names among "
                             f"{list(self.joint_names)}")
        self._controller_index = [self.joint_names.index(n) for n in self.controller_joints]
        sources = {}
        if params.object_pose_topic:
            sources["obj_pose"] = params.object_pose_topic
        if params.goal_topic or params.goal_pos:
            sources["goal_pos"] = params.goal_topic or "parameter goal_pos"
        if params.camera_topic:
            sources["rgb"] = params.camera_topic
        base_frame = params.base_frame or self.arm.base_link
        frames = Frames(base_frame, params.task_frame,
                        base_in_task_or_default(params.base_in_task, self.arm.name, "parameter base_in_task"))
        crop = tuple(params.camera_crop) if params.camera_crop else None
        self.obs = ObservationAssembler(contract, self.model, sources, frames, params.max_input_age_s,
                                        params.ignore_unknown_joints, crop)  # type: ignore[arg-type]
        if params.goal_pos and not params.goal_topic:
            self.obs.set_goal(params.goal_pos, params.goal_frame or base_frame, 0.0)
        self.ref_quat: np.ndarray | None = None
        self.joint_receipt = -math.inf  # monotonic time the last accepted joint state arrived
        self.joint_stamp_ns = 0  # header stamp of the last accepted joint state (receipt time if unstamped)
        self.seen_joint_state = False
        self.episode: int | None = None
        self.steps_since_reset = 0  # decisions since the policy was last reset
        self.ticks = self.policy_steps = self.overruns = self.missed = self.resyncs = 0
        self.rejected: dict[str, int] = {}
        self.last_reasons: deque[str] = deque(maxlen=8)
        self.loop_ms: deque[float] = deque(maxlen=10_000)
        self.compute_ms: deque[float] = deque(maxlen=10_000)
        self.last_command: SafeCommand | None = None
        self.first_tick: float | None = None
        self.last_tick: float | None = None
        self._throttle = _Throttle()

    # ---- inputs -----------------------------------------------------------------------------
    def _reject(self, source: str, reasons: list[str]) -> list[str]:
        self.rejected[source] = self.rejected.get(source, 0) + 1
        self.last_reasons.extend(f"{source}: {r}" for r in reasons)
        self._throttle.warn(source, f"rejected a message on {source}: {'; '.join(reasons)}")
        return reasons

    def on_joint_state(self, msg: Any, now: float, receipt: float | None = None) -> list[str]:
        """Take a sensor_msgs/JointState (`now`: wall clock s; `receipt`: monotonic arrival time).

        Raises:
            ContractMismatch: on the first joint state only, when it lacks a contract joint.
        """
        if not self.seen_joint_state:
            self.obs.check_first_joint_state(msg)
            self.seen_joint_state = True
        reading, reasons = self.obs.parse_joint_state(msg)
        if reading is not None:
            stamp = reading.stamp if reading.stamp is not None else now
            check = self.safety.on_joint_state(self.joint_names, reading.position, stamp, now)
            if check.accepted:
                arrived = time.monotonic() if receipt is None else receipt
                gap = arrived - self.joint_receipt
                if math.isfinite(gap) and gap > RESYNC_AFTER_S:
                    log.warning("joint states resumed after %.2f s: the safety filter restarts from the arm's "
                                "position (the arm may have been restarted)", gap)
                    self.safety = self._fresh_filter()
                    self.safety.on_joint_state(self.joint_names, reading.position, stamp, now)
                    self.resyncs += 1
                self.obs.set_joint_state(reading, stamp)
                self.joint_receipt = arrived
                header_ns = m.stamp_to_ns(msg.header.stamp)
                self.joint_stamp_ns = header_ns if header_ns > 0 else round(now * 1e9)
                if self.ref_quat is None:
                    self.ref_quat = self.model.fk(reading.position[:self.model.dof])[1]
                return []
            reasons = check.reasons
        return self._reject("joint_states", reasons)

    def on_object_pose(self, msg: Any, now: float) -> list[str]:
        reasons = self.obs.on_object_pose(msg, now)
        return self._reject("object_pose", reasons) if reasons else []

    def on_goal(self, msg: Any, now: float) -> list[str]:
        reasons = self.obs.on_goal(msg, now)
        return self._reject("goal", reasons) if reasons else []

    def on_image(self, msg: Any, now: float) -> list[str]:
        reasons = self.obs.on_image(msg, now)
        return self._reject("camera", reasons) if reasons else []

    def on_tf(self, msg: Any, static: bool = False) -> list[str]:
        """tf2_msgs/TFMessage from /tf or /tf_static: frames inputs may be expressed in."""
        reasons = self.obs.on_tf(msg, static)
        return self._reject("tf_static" if static else "tf", reasons) if reasons else []

    def on_estop(self, msg: Any) -> None:
        """std_msgs/Bool: true latches the e-stop; false does nothing (only ~/reset_estop clears it)."""
        if msg.data and not self.safety.estopped:
            log.error("e-stop engaged: holding position until ~/reset_estop")
        if msg.data:
            self.safety.estop()

    def on_reset_estop(self, msg: Any) -> None:
        if msg.data and self.safety.estopped:
            log.warning("e-stop reset by ~/reset_estop: resuming control")
            self.safety.reset_estop()
            self.policy.reset()
            self.steps_since_reset = 0

    def on_episode(self, msg: Any) -> None:
        """std_msgs/Int32 episode index: a new value starts a new episode."""
        if self.episode is not None and int(msg.data) != self.episode:
            self.reset_episode()
        self.episode = int(msg.data)

    def reset_episode(self) -> None:
        """The scene was reset: forget the plan, the inputs and the filter's reference (the arm may
        have been moved), keeping the e-stop latch and the counters."""
        self.policy.reset()
        self.steps_since_reset = 0
        self.ref_quat = None
        self.safety = self._fresh_filter()
        self.obs.joints = None
        for name in ("obj_pose", "rgb") + (("goal_pos",) if self.params.goal_topic else ()):
            self.obs.inputs.pop(name, None)

    def _fresh_filter(self) -> SafetyFilter:
        """A filter without a reference position that keeps the e-stop latch and the counters."""
        fresh = SafetyFilter(self.model, self.limits)
        if self.safety.estopped:
            fresh.estop()
        fresh.counters = dataclasses.replace(self.safety.counters)
        return fresh

    def missing(self, now: float) -> list[str]:
        return self.obs.missing(now)

    # ---- the tick ---------------------------------------------------------------------------
    def _targets(self, action: np.ndarray) -> np.ndarray:
        assert self.obs.joints is not None
        q = self.obs.joints.position[:self.model.dof]
        if self.contract.control_mode == "pd_ee_delta_pos":
            ref = self.ref_quat if self.params.hold_orientation == "episode_start" else None
            arm = slice(0, self.model.dof)
            limits = (np.asarray(self.limits.lower[arm]), np.asarray(self.limits.upper[arm]))
            return ee_delta_action_to_joint_targets(self.model, q, action, ref_quat=ref, scales=self.scales,
                                                    hold_orientation=self.arm.ik_mode == "pose", limits=limits)
        return joint_delta_action_to_joint_targets(self.model, q, action, self.scales)

    def tick(self, now: float, late_s: float = 0.0) -> TickResult:
        """One control period at wall-clock time `now`; `late_s`: how late the tick started."""
        start = self.timer()
        self.ticks += 1
        reasons = self.missing(now)
        action = target = None
        observed_ns = self.joint_stamp_ns
        # Which message of every other input the decision used: a reader pairs exactly these.
        inputs_ns = {name: round(inp.time * 1e9) for name, inp in self.obs.inputs.items() if inp.time > 0}
        if not reasons:
            action = np.asarray(self.policy.act(self.obs.observation()), dtype=np.float64).reshape(-1)
            self.policy_steps += 1
            try:
                target = self._targets(action)
            except ValueError as exc:  # NaN/inf or a wrong-sized action
                reasons = [f"policy action rejected: {exc}"]
        if target is None:
            last = self.safety.last_safe
            target = last if last is not None else np.full(len(self.joint_names), np.nan)
        command = self.last_command = self.safety.send(target, now)
        reasons = reasons + command.reasons
        # Nothing goes out while the watchdog holds: the controller keeps its last target by itself,
        # and a restarted one holds where the arm is, which re-sending the last command would undo.
        message = self._message(command) if command.sent and not command.watchdog_tripped else None
        intent = None
        if action is not None and np.all(np.isfinite(action)):
            intent = pa.policy_action(action, self._changed(target, command, message is None), observed_ns,
                                     self.steps_since_reset, inputs_ns)
            self.steps_since_reset += 1
        compute = self.timer() - start
        overrun = late_s + compute > self.period
        if overrun:
            self.overruns += 1
            self._throttle.warn("overrun", f"control tick overran its {self.period * 1e3:.0f} ms deadline: started "
                                           f"{late_s * 1e3:.1f} ms late, took {compute * 1e3:.1f} ms "
                                           f"({self.overruns} overruns so far)")
        if reasons:
            self.last_reasons.extend(reasons[-2:])
        self.compute_ms.append(compute * 1e3)
        self.first_tick = now if self.first_tick is None else self.first_tick
        self.last_tick = now
        return TickResult(command, message, action, intent, reasons, compute, overrun)

    def _changed(self, target: np.ndarray, command: SafeCommand, unsent: bool) -> bool:
        """Whether the filter changed what the policy asked for. A finger target past the finger's
        travel is how a gripper is told to squeeze (ActionScales.finger_closed), so clamping it to
        the travel does not count; rate-limiting it does."""
        if unsent or command.held or command.positions is None:
            return True
        asked = np.clip(target, self.limits.lower, self.limits.upper)
        dof = self.model.dof
        asked[:dof] = target[:dof]
        return bool(np.any(np.abs(command.positions - asked) > 1e-9))

    def count_missed(self, ticks: int) -> None:
        """Ticks the loop skipped because it was more than a period behind: each is an overrun."""
        self.overruns += ticks
        self.missed += ticks

    def _message(self, command: SafeCommand) -> Any:
        assert command.positions is not None
        values = command.positions[self._controller_index]
        if self.params.command_interface == "forward":
            return m.float64_multi_array(values)
        duration = self.params.trajectory_time_s or self.period
        return m.joint_trajectory(self.controller_joints, [values], [duration])

    # ---- reporting --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from sim2real.stats import percentile

        counters = self.safety.counters
        span = (self.last_tick or 0.0) - (self.first_tick or 0.0)
        hz = (self.ticks - 1) / span if span > 0 else 0.0
        tripped = self.last_command is not None and self.last_command.watchdog_tripped
        state = ("estop" if self.safety.estopped else "watchdog" if tripped
                 else "running" if self.policy_steps else "waiting")
        loop, compute = list(self.loop_ms), list(self.compute_ms)
        return {"node": NODE_NAME, "state": state, "episode": self.episode, "ticks": self.ticks,
                "policy_steps": self.policy_steps, "overruns": self.overruns, "missed_ticks": self.missed,
                "control_hz": self.contract.control_freq,
                "achieved_hz": round(hz, 3), "estop": self.safety.estopped,
                "watchdog_trips": counters.watchdog_trips, "safety_resyncs": self.resyncs,
                "safety": dataclasses.asdict(counters),
                "loop_p50_ms": round(percentile(loop, 50), 3) if loop else None,
                "loop_p99_ms": round(percentile(loop, 99), 3) if loop else None,
                "compute_p50_ms": round(percentile(compute, 50), 3) if compute else None,
                "compute_p99_ms": round(percentile(compute, 99), 3) if compute else None,
                "rejected": dict(self.rejected), "last_reasons": list(self.last_reasons)}


__all__ = ["CheckpointPolicy", "ExpertPolicy", "Policy", "PolicyNodeCore", "PolicyNodeParams", "ReachPolicy",
           "TickResult", "make_policy", "policy_node_params"]
