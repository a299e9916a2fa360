"""rclpy transport: topics, parameters and the FollowJointTrajectory action through real ROS 2.

Used when `import rclpy` works (a sourced ROS 2 install, RoboStack, or the ros-rclpy PyPI
wheels). The bridge still speaks rosbags dataclasses; the conversion is the CDR codec both
sides share:

- publish: `serialize(msg)` with rosbags, then `Publisher.publish(bytes)`; rclpy hands
  serialized bytes to the rmw layer unchanged, so no rclpy message object is built;
- subscribe: `create_subscription(..., raw=True)` delivers the serialized bytes, decoded with
  `sim2real.ros.messages.deserialize`, which ignores trailing bytes: Fast CDR (rclpy's
  `serialize_message` and Fast DDS writers) appends padding (8 bytes on a JointState) that
  rosbags' strict size check rejects. Padding bytes inside the message are not zeroed by
  Fast CDR either, which is why tests compare decoded messages and never raw bytes.
- `to_rclpy` / `from_rclpy` do the same through `rclpy.serialization` where an rclpy object
  is needed (action goals).

rclpy message classes are resolved from the type name (`sensor_msgs/msg/JointState` ->
`sensor_msgs.msg.JointState`); their packages must be installed (`ros-sensor-msgs`, ...).

Actions: `follow_joint_trajectory` needs `control_msgs`, which is not on PyPI; it is imported
on first use and the call raises `TransportError` saying so when missing. `capabilities`
contains "actions" only when control_msgs is importable.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

from sim2real.ros.messages import MessageError, deserialize, ros_type_name, serialize, type_of
from robot_bridge.transport import Callback, Publisher, QoS, Transport, TransportError

# Bound on callbacks run by one spin_once, so a flood on one topic cannot hold the policy loop.
_MAX_CALLBACKS = 256
_LOCAL_PEERS = {"localhost", "127.0.0.1", "::1"}


def to_rclpy_qos(qos: QoS) -> QoSProfile:
    """Bridge QoS -> rclpy QoSProfile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE,
    )


def interface_class(type_name: str) -> Any:
    """Import the rclpy class of `pkg/msg/Type` or `pkg/action/Type`.

    Raises:
        TransportError: the interface package is not installed (names the PyPI wheel).
    """
    parts = type_name.strip("/").split("/")
    if len(parts) != 3:
        raise TransportError(f"interface {type_name!r}: expected 'pkg/msg/Type' or 'pkg/action/Type'")
    pkg, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise TransportError(
            f"interface {type_name}: cannot import {pkg}.{kind}.{name} ({exc}); install the "
            f"package (PyPI wheel 'ros-{pkg.replace('_', '-')}', or source a ROS 2 install)"
        ) from exc


def to_rclpy(msg: Any) -> Any:
    """rosbags message -> rclpy message of the same type (through CDR bytes)."""
    return deserialize_message(serialize(msg), interface_class(type_of(msg)))


def from_rclpy(rmsg: Any, type_name: str) -> Any:
    """rclpy message -> rosbags message (tolerates Fast CDR's trailing padding)."""
    return deserialize(serialize_message(rmsg), type_name)


def _check_loopback_env() -> None:
    """Make rclpy discovery loopback-only, or refuse when the environment asks for more."""
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if rng and rng != "LOCALHOST":
        raise TransportError(
            f"rclpy transport: ROS_AUTOMATIC_DISCOVERY_RANGE={rng} is not loopback-only; "
            "unset it or set LOCALHOST, or pass allow_network=True to use the network deliberately"
        )
    peers = [p.strip() for p in os.environ.get("ROS_STATIC_PEERS", "").split(";") if p.strip()]
    remote = [p for p in peers if p not in _LOCAL_PEERS and not p.startswith("127.")]
    if remote:
        raise TransportError(
            f"rclpy transport: ROS_STATIC_PEERS names non-local peers {remote}; "
            "pass allow_network=True to use the network deliberately"
        )
    # rcl reads this when the context initialises, so it must be set before rclpy.init.
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


class RclpyPublisher(Publisher):
    """An rclpy publisher fed with rosbags-serialized bytes."""

    def __init__(self, pub: Any, topic: str, type_name: str, check_open: Callable[[], None]) -> None:
        self._pub = pub
        self._check_open = check_open
        self.topic = topic
        self.type_name = type_name

    def publish(self, msg: Any) -> None:
        self._check_open()
        if type_of(msg) != self.type_name:
            raise MessageError(f"publisher {self.topic}: expected {self.type_name}, got {type_of(msg)}")
        self._pub.publish(serialize(msg))


@dataclass(frozen=True)
class ActionOutcome:
    """How an action goal ended.

    Attributes:
        accepted: the server accepted the goal.
        status: action_msgs/GoalStatus code (4 succeeded, 5 canceled, 6 aborted; 0 if rejected).
        result: the rclpy result message (None if rejected).
    """

    accepted: bool
    status: int
    result: Any


@dataclass(frozen=True)
class TrajectoryResult:
    """FollowJointTrajectory outcome: error_code 0 is SUCCESSFUL (control_msgs convention)."""

    accepted: bool
    status: int
    error_code: int
    error_string: str

    @property
    def succeeded(self) -> bool:
        return self.accepted and self.status == 4 and self.error_code == 0


class RclpyTransport(Transport):
    """ROS 2 through rclpy, with its own context, node and single-threaded executor.

    Args:
        node_name: ROS node name.
        domain_id: ROS domain; default `ROS_DOMAIN_ID`, else 0 (rclpy's own rule).
        allow_network: skip the loopback-only guard (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`
            is set unless the environment asks for another range, which then raises).
        namespace: node namespace.
    """

    name = "rclpy"

    def __init__(
        self,
        node_name: str,
        domain_id: int | None = None,
        *,
        allow_network: bool = False,
        namespace: str = "",
    ) -> None:
        if not allow_network:
            _check_loopback_env()
        self.node_name = node_name
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id)
        try:
            self._node = rclpy.create_node(node_name, namespace=namespace, context=self._context)
        except Exception:
            self._context.try_shutdown()
            raise
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._keep: list[Any] = []
        self._action_clients: dict[str, ActionClient] = {}
        self._ran = 0
        self._closed = False
        caps = {"topics", "parameters"}
        if _importable("control_msgs.action"):
            caps.add("actions")
        self.capabilities = frozenset(caps)
        self.decode_errors = 0

    @property
    def node(self) -> Any:
        """The rclpy node, for graph queries and anything the interface does not cover."""
        return self._node

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"rclpy transport {self.node_name!r} is closed")

    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> RclpyPublisher:
        self._check_open()
        type_name = ros_type_name(type_name)
        pub = self._node.create_publisher(interface_class(type_name), topic, to_rclpy_qos(qos))
        self._keep.append(pub)
        return RclpyPublisher(pub, topic, type_name, self._check_open)

    def subscribe(self, topic: str, type_name: str, callback: Callback, qos: QoS = QoS.DEFAULT) -> None:
        self._check_open()
        type_name = ros_type_name(type_name)

        def on_bytes(data: bytes) -> None:
            self._ran += 1
            try:
                msg = deserialize(data, type_name)
            except MessageError as exc:
                self.decode_errors += 1
                self._node.get_logger().warning(f"dropped a message on {topic}: {exc}")
                return
            callback(msg)

        sub = self._node.create_subscription(
            interface_class(type_name), topic, on_bytes, to_rclpy_qos(qos), raw=True
        )
        self._keep.append(sub)

    def spin_once(self, timeout_s: float = 0.0) -> int:
        self._check_open()
        self._ran = 0
        # The first call waits for work; the rest drain what is already queued without waiting.
        self._executor.spin_once(timeout_sec=max(timeout_s, 0.0))
        for _ in range(_MAX_CALLBACKS):
            before = self._ran
            self._executor.spin_once(timeout_sec=0.0)
            if self._ran == before:
                break
        return self._ran

    # --- parameters ------------------------------------------------------------------------

    def get_parameter(self, name: str, default: Any) -> Any:
        """Declare (first call) and read a node parameter; settable with `ros2 param set`."""
        self._check_open()
        if not self._node.has_parameter(name):
            self._node.declare_parameter(name, default)
        return self._node.get_parameter(name).value

    # --- actions ---------------------------------------------------------------------------

    def send_goal(self, action_name: str, action_type: str, goal: Any, timeout_s: float = 30.0) -> ActionOutcome:
        """Send an rclpy goal message and spin (running subscriptions too) until the result.

        Raises:
            TransportError: no server within `timeout_s`, or no result in time.
        """
        self._check_open()
        deadline = time.monotonic() + timeout_s
        client = self._action_clients.get(action_name)
        if client is None:
            client = ActionClient(self._node, interface_class(action_type), action_name)
            self._action_clients[action_name] = client
        while not client.server_is_ready():
            if time.monotonic() >= deadline:
                raise TransportError(f"action {action_name}: no server within {timeout_s:.1f} s")
            self._executor.spin_once(timeout_sec=0.05)
        handle = self._wait(client.send_goal_async(goal), deadline, f"action {action_name}: goal response")
        if not handle.accepted:
            return ActionOutcome(False, 0, None)
        response = self._wait(handle.get_result_async(), deadline, f"action {action_name}: result")
        return ActionOutcome(True, int(response.status), response.result)

    def _wait(self, future: Any, deadline: float, what: str) -> Any:
        self._executor.spin_until_future_complete(future, timeout_sec=max(deadline - time.monotonic(), 0.0))
        if not future.done():
            raise TransportError(f"{what}: timed out")
        return future.result()

    def follow_joint_trajectory(
        self,
        trajectory: Any,
        action_name: str = "/joint_trajectory_controller/follow_joint_trajectory",
        goal_time_tolerance_s: float = 0.0,
        timeout_s: float = 30.0,
    ) -> TrajectoryResult:
        """Execute a rosbags JointTrajectory through control_msgs/FollowJointTrajectory.

        Requires control_msgs (not on PyPI: a sourced ROS 2 install or RoboStack).
        """
        if "actions" not in self.capabilities:
            raise TransportError(
                "follow_joint_trajectory: control_msgs is not importable; it is not on PyPI, "
                "so source a ROS 2 install (or RoboStack) that provides it"
            )
        action = interface_class("control_msgs/action/FollowJointTrajectory")
        goal = action.Goal()
        goal.trajectory = to_rclpy(trajectory)
        sec, nanosec = divmod(round(goal_time_tolerance_s * 1e9), 1_000_000_000)
        goal.goal_time_tolerance.sec, goal.goal_time_tolerance.nanosec = int(sec), int(nanosec)
        out = self.send_goal(action_name, "control_msgs/action/FollowJointTrajectory", goal, timeout_s)
        if not out.accepted:
            return TrajectoryResult(False, 0, -1, "goal rejected")
        return TrajectoryResult(True, out.status, int(out.result.error_code), str(out.result.error_string))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for client in self._action_clients.values():
            client.destroy()
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        self._context.try_shutdown()


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
