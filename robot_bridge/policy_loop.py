"""The policy node's rate loop: `PolicyNodeCore` wired to a `Transport`.

Start-up: subscribe, then wait up to `startup_timeout_s` for every input the contract needs;
the first joint state is checked against the contract (sim2real.ros.observation). Then, at each
deadline (the contract's period), the loop waits up to `joint_state_wait_s` for a joint state
newer than the deadline, takes whatever else has arrived by then, ticks the core and publishes
its command, then the decided action on `action_topic`. Loop latency is measured
from that joint state's arrival to the command's publication. A tick more than one period
late skips the missed ticks (each counted as an overrun). A status JSON goes out on
`~/status` every `status_period_s` and whenever the episode changes; the final status is
returned (and printed by `node_main`). With `latency_log` set, every tick's loop and compute
times are written there as JSON when the node exits, however it exits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sim2real.ros import messages as m
from sim2real.ros.observation import POINT_STAMPED
from robot_bridge.diagnostics import DIAGNOSTIC_ARRAY, policy_diagnostics
from robot_bridge.policy_node import NODE_NAME, Policy, PolicyNodeCore, PolicyNodeParams, make_policy, \
    policy_node_params
from robot_bridge.ros_params import ParamError, RosArgs
from robot_bridge.transport import QoS, Transport, TransportError, follow_tf, node_transport
from sim2real.atomic import atomic_write
from sim2real.checkpoint import CheckpointError
from sim2real.contract import ContractMismatch

log = logging.getLogger(NODE_NAME)
INT32 = "std_msgs/msg/Int32"


class StartupError(RuntimeError):
    """The node could not start: an input the contract needs never arrived."""


class _ActionCommands:
    """control_msgs/FollowJointTrajectory goals sent without waiting (a new goal preempts the last)."""

    def __init__(self, transport: Transport, action_name: str) -> None:
        from rclpy.action import ActionClient

        from robot_bridge.transport.rclpy_transport import interface_class, to_rclpy

        self._action = interface_class("control_msgs/action/FollowJointTrajectory")
        self._client = ActionClient(transport.node, self._action, action_name)  # type: ignore[attr-defined]
        self._to_rclpy = to_rclpy
        self.unsent = 0

    def publish(self, trajectory: Any) -> None:
        if not self._client.server_is_ready():
            self.unsent += 1
            return
        goal = self._action.Goal()
        goal.trajectory = self._to_rclpy(trajectory)
        self._client.send_goal_async(goal)


def command_publisher(transport: Transport, params: PolicyNodeParams, ros: RosArgs) -> Any:
    """Where commands go: a topic publisher, or the action client (rclpy with control_msgs only)."""
    controller = params.controller  # relative: under the node's namespace
    if params.command_interface == "forward":
        return transport.publisher(ros.topic(f"{controller}/commands"), m.FLOAT64_MULTI_ARRAY)
    if params.command_interface == "trajectory":
        return transport.publisher(ros.topic(f"{controller}/joint_trajectory"), m.JOINT_TRAJECTORY)
    if "actions" not in transport.capabilities:
        raise ValueError(
            f"command_interface 'action' sends control_msgs/FollowJointTrajectory goals, which needs the rclpy "
            f"transport with control_msgs importable (actions do not interoperate across DDS vendors, and "
            f"control_msgs is not on PyPI); transport {transport.name!r} offers {sorted(transport.capabilities)}: "
            f"use command_interface trajectory or forward")
    return _ActionCommands(transport, ros.topic(f"{controller}/follow_joint_trajectory"))


def _subscribe(core: PolicyNodeCore, transport: Transport, params: PolicyNodeParams, ros: RosArgs,
               fatal: list[BaseException]) -> None:
    def guarded(handler: Callable[[Any], Any]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            try:
                handler(msg)
            except ContractMismatch as exc:  # the start-up check of the first joint state
                fatal.append(exc)
        return callback

    topic = ros.topic
    # The episode topic first: a reset and the arm's new state arriving in one spin are handled in that order.
    if params.episode_topic:
        transport.subscribe(topic(params.episode_topic), INT32, core.on_episode)
    if params.estop_topic:
        transport.subscribe(topic(params.estop_topic), m.BOOL, core.on_estop)
    transport.subscribe(topic("~/reset_estop"), m.BOOL, core.on_reset_estop)
    transport.subscribe(topic("~/reset"), m.BOOL, lambda msg: core.reset_episode() if msg.data else None)
    # Frames before the inputs expressed in them.
    for skipped in follow_tf(transport, [(topic(params.tf_static_topic), True), (topic(params.tf_topic), False)],
                             lambda msg, static: core.on_tf(msg, static=static)):
        log.warning("not following %s: frames resolve through base_in_task only", skipped)
    transport.subscribe(topic(params.joint_states_topic), m.JOINT_STATE,
                        guarded(lambda msg: core.on_joint_state(msg, time.time(), time.monotonic())), QoS.SENSOR_DATA)
    if params.object_pose_topic:
        transport.subscribe(topic(params.object_pose_topic), m.POSE_STAMPED,
                            lambda msg: core.on_object_pose(msg, time.time()), QoS.SENSOR_DATA)
    if params.goal_topic:
        kind = POINT_STAMPED if params.goal_type == "point" else m.POSE_STAMPED
        transport.subscribe(topic(params.goal_topic), kind, lambda msg: core.on_goal(msg, time.time()))
    if params.camera_topic:
        kind = m.COMPRESSED_IMAGE if params.camera_type == "compressed" else m.IMAGE
        transport.subscribe(topic(params.camera_topic), kind, lambda msg: core.on_image(msg, time.time()),
                            QoS.SENSOR_DATA)


def _diagnostics_publisher(transport: Transport, params: PolicyNodeParams, ros: RosArgs) -> Any:
    """`/diagnostics` (diagnostic_msgs/DiagnosticArray) beside ~/status; None when turned off or
    when rclpy lacks the diagnostic_msgs package (said once, the node runs on)."""
    if not params.diagnostics_topic:
        return None
    try:
        return transport.publisher(ros.topic(params.diagnostics_topic), DIAGNOSTIC_ARRAY)
    except TransportError as exc:
        log.warning("not publishing %s (%s)", params.diagnostics_topic, exc)
        return None


def _start(core: PolicyNodeCore, transport: Transport, params: PolicyNodeParams, stop: threading.Event,
           fatal: list[BaseException]) -> None:
    deadline = time.monotonic() + params.startup_timeout_s
    while not stop.is_set():
        transport.spin_once(0.05)
        if fatal:
            raise fatal[0]
        missing = core.missing(time.time())
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise StartupError(f"no complete observation within startup_timeout_s={params.startup_timeout_s:g}: "
                               + "; ".join(missing))


def write_latency_log(path: str | os.PathLike[str], core: PolicyNodeCore) -> Path:
    """`{"loop_ms", "compute_ms", "overruns", "ticks"}` of `core` as JSON at `path`, atomically.

    loop_ms: joint state arrival to command publication, per published command; compute_ms: the
    tick's own time (observation, policy, conversion, safety filter), per tick.
    """
    data = {"loop_ms": [round(v, 4) for v in core.loop_ms], "compute_ms": [round(v, 4) for v in core.compute_ms],
            "overruns": core.overruns, "ticks": core.ticks}
    return atomic_write(path, json.dumps(data))


def run_policy_node(params: PolicyNodeParams, ros: RosArgs | None = None, *, policy: Policy | None = None,
                    transport: Transport | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run the node until `stop`, `max_ticks` or `duration_s`; returns the final status.

    Raises:
        ContractMismatch / StartupError: the node refused to start (the message says why).
        ValueError: a parameter the transport cannot serve (command_interface action on dds).
    """
    ros = ros or RosArgs(NODE_NAME)
    stop = stop or threading.Event()
    core = PolicyNodeCore(policy or make_policy(params), params)
    own = transport is None
    if transport is None:
        transport = node_transport(params, ros)
    try:
        commands = command_publisher(transport, params, ros)
        status_pub = transport.publisher(ros.topic("~/status"), m.STRING)
        diagnostics = _diagnostics_publisher(transport, params, ros)
        intents = transport.publisher(ros.topic(params.action_topic), m.FLOAT64_MULTI_ARRAY) \
            if params.action_topic else None
        if "parameters" in transport.capabilities:  # rclpy: `ros2 param list/get/set` (robot_bridge.node_parameters)
            from robot_bridge.node_parameters import declare_on

            declare_on(transport.node, params, core)  # type: ignore[attr-defined]
        fatal: list[BaseException] = []
        _subscribe(core, transport, params, ros, fatal)
        _start(core, transport, params, stop, fatal)
        log.info("all inputs present: running %s at %g Hz on %s, commands via %s", params.policy,
                 core.contract.control_freq, transport.name, params.command_interface)
        period, wait = core.period, params.joint_state_wait_s
        start = next_tick = next_status = time.monotonic()
        episode = core.episode
        while not stop.is_set():
            now = time.monotonic()
            if (params.max_ticks and core.ticks >= params.max_ticks) or \
                    (params.duration_s and now - start >= params.duration_s):
                break
            if now >= next_tick and (core.joint_receipt >= next_tick or now >= next_tick + wait):
                # Take what was published with that joint state before deciding: an arm publishes its
                # episode index, object pose and goal beside it, and a spin that took the joint state
                # may have started just before they arrived (the expert then acted on a finished
                # episode's plan, or on the previous object pose).
                transport.spin_once(0.0)
                now = time.monotonic()
                late = now - next_tick
                if late >= period:
                    missed = math.floor(late / period)
                    core.count_missed(missed)
                    next_tick += missed * period
                    late -= missed * period
                result = core.tick(time.time(), late)
                if result.message is not None:
                    commands.publish(result.message)
                    core.loop_ms.append((time.monotonic() - core.joint_receipt) * 1e3)
                if intents is not None and result.intent is not None:  # after the command: it is not urgent
                    intents.publish(result.intent)
                next_tick += period
            if now >= next_status or core.episode != episode:
                status = core.status()
                status_pub.publish(m.string_msg(json.dumps(status)))
                if diagnostics is not None:
                    diagnostics.publish(policy_diagnostics(status, ros.topic("~"), params.arm))
                next_status, episode = now + params.status_period_s, core.episode
            until = next_tick if time.monotonic() < next_tick else next_tick + wait
            transport.spin_once(min(max(until - time.monotonic(), 0.0), 0.05))
        status = core.status()
        status_pub.publish(m.string_msg(json.dumps(status)))
        return status
    finally:
        if params.latency_log:
            try:
                write_latency_log(params.latency_log, core)
            except OSError as exc:  # reported, but never hides why the node stopped
                log.error("could not write latency_log %s: %s", params.latency_log, exc)
        if own:
            transport.close()


def node_main(argv: Sequence[str]) -> None:
    """The console script: parse ROS arguments, run, print the final status as one JSON line."""
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s: %(message)s")
    try:
        params, ros = policy_node_params(argv)
    except (ParamError, ValueError) as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        status = run_policy_node(params, ros, stop=stop)
    except (ContractMismatch, StartupError, ValueError, CheckpointError, TransportError, ImportError) as exc:
        # An unreadable checkpoint, a transport that cannot start or a missing package (the
        # default URDF comes with mani_skill) is a start-up refusal too, not a traceback.
        print(f"{ros.node_name}: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(status), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """`sim2real-policy-node [--params-file FILE] [--ros-args -p name:=value ...]` (also
    `python -m robot_bridge.policy_loop`): the node's process, the core wired to its transport."""
    node_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
