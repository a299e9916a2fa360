"""Transports: one small interface over rclpy and plain cyclonedds.

Messages are rosbags dataclasses (see `sim2real.ros.messages`) on both transports; type names
are `pkg/msg/Type`. Callbacks run inside `spin_once`, in the caller's thread, like an rclpy
single-threaded executor, so a policy loop needs no locks.

    with make_transport("auto", "policy_node") as t:
        t.subscribe("/joint_states", JOINT_STATE, on_state, QoS.SENSOR_DATA)
        pub = t.publisher("/arm_controller/joint_trajectory", JOINT_TRAJECTORY)
        while running:
            t.spin_once(0.01)
            pub.publish(msg)

`auto` picks rclpy when `import rclpy` works (sourced ROS 2, RoboStack, ros-rclpy wheels) and
cyclonedds otherwise. Only rclpy offers actions (FollowJointTrajectory) and parameters; check
`capabilities` before using them.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal

from sim2real.ros.messages import TF_MESSAGE

Callback = Callable[[Any], None]


class TransportError(RuntimeError):
    """A transport could not start, or was used in a way it does not support."""


@dataclass(frozen=True)
class QoS:
    """The ROS 2 QoS fields the bridge uses; the two ROS profiles are class attributes.

    Attributes:
        reliable: reliable (True) or best effort (False).
        depth: keep-last history depth.
        transient_local: late joiners get the last `depth` samples (False: volatile).
    """

    reliable: bool = True
    depth: int = 10
    transient_local: bool = False

    DEFAULT: ClassVar[QoS]
    SENSOR_DATA: ClassVar[QoS]

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"QoS.depth: expected >= 1, got {self.depth}")


# rclpy's qos_profile_system_default / qos_profile_sensor_data (history, depth, reliability, durability).
QoS.DEFAULT = QoS(reliable=True, depth=10, transient_local=False)
QoS.SENSOR_DATA = QoS(reliable=False, depth=5, transient_local=False)


class Publisher(ABC):
    """Publishes rosbags messages of one type on one topic."""

    topic: str
    type_name: str

    @abstractmethod
    def publish(self, msg: Any) -> None:
        """Send one message; raises `MessageError` if it is not of this publisher's type."""


class Transport(ABC):
    """Topics for every transport; actions and parameters where `capabilities` says so."""

    name: ClassVar[str]
    capabilities: frozenset[str]

    @abstractmethod
    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> Publisher:
        """Create a publisher; `topic` is a ROS name such as `/joint_states`."""

    @abstractmethod
    def subscribe(self, topic: str, type_name: str, callback: Callback, qos: QoS = QoS.DEFAULT) -> None:
        """Call `callback(msg)` from `spin_once` for every message received on `topic`."""

    @abstractmethod
    def spin_once(self, timeout_s: float = 0.0) -> int:
        """Wait up to `timeout_s` for messages and run their callbacks; returns how many ran."""

    @abstractmethod
    def close(self) -> None:
        """Release the DDS entities; further calls raise `TransportError`. Idempotent."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


TransportName = Literal["auto", "dds", "rclpy"]
TRANSPORT_NAMES: tuple[str, ...] = ("auto", "dds", "rclpy")


def rclpy_available() -> bool:
    """True when `import rclpy` works (importing starts nothing; `rclpy.init` would)."""
    if importlib.util.find_spec("rclpy") is None:
        return False
    try:
        import rclpy  # noqa: F401  (a found but broken install fails here, e.g. missing .so)
    except (ImportError, OSError):
        return False
    return True


def resolve_transport_name(name: str) -> str:
    """"auto" -> "rclpy" or "dds"; other valid names unchanged; ValueError for unknown names."""
    if name not in TRANSPORT_NAMES:
        raise ValueError(f"transport: expected one of {', '.join(TRANSPORT_NAMES)}, got {name!r}")
    if name == "auto":
        return "rclpy" if rclpy_available() else "dds"
    return name


def make_transport(name: TransportName, node_name: str, **kw: Any) -> Transport:
    """Build a transport by name.

    Args:
        name: "rclpy", "dds", or "auto" (rclpy when importable, else dds).
        node_name: ROS node name (rclpy) or participant label (dds).
        **kw: passed to the transport (`domain_id`, `allow_network`, ...); `namespace` names
            the node's namespace in the rclpy graph.

    Raises:
        ValueError: unknown transport name.
        TransportError: the chosen transport cannot start (e.g. rclpy requested but missing).
    """
    resolved = resolve_transport_name(name)
    # The node's namespace (`-r __ns:=`): rclpy shows the node under it in the ROS graph; names
    # are resolved by the caller (robot_bridge.ros_params.RosArgs.topic) on both transports.
    namespace = kw.pop("namespace", "/")
    if resolved == "rclpy":
        if not rclpy_available():
            raise TransportError(
                "transport 'rclpy': rclpy is not importable; source a ROS 2 install, "
                "install the ros-rclpy wheels, or use transport 'dds'"
            )
        from robot_bridge.transport.rclpy_transport import RclpyTransport

        return RclpyTransport(node_name, namespace="" if namespace == "/" else namespace, **kw)
    from robot_bridge.transport.dds import DdsTransport

    return DdsTransport(node_name, **kw)


def node_transport(params: Any, ros: Any) -> Transport:
    """The transport of a node process: `params` carries `transport`, `domain_id` (-1: the
    environment's ROS_DOMAIN_ID) and `allow_network`; `ros` (robot_bridge.ros_params.RosArgs)
    the node's name and namespace."""
    return make_transport(params.transport, ros.node_name,
                          domain_id=None if params.domain_id < 0 else params.domain_id,
                          allow_network=params.allow_network, namespace=ros.namespace)


def follow_tf(transport: Transport, topics: list[tuple[str, bool]], on_tf: Callable[[Any, bool], None]) -> list[str]:
    """Subscribe `on_tf(msg, static)` to tf2_msgs/TFMessage on each (topic, static) with a name
    ("" turns one off): reliable, depth 100, the static one transient local as tf2 latches it.
    Returns why a topic is not followed (rclpy without tf2_msgs: the PyPI wheels have none;
    every ROS 2 install has it), for the node to say; the node runs on without it."""
    skipped = []
    for name, static in topics:
        if not name:
            continue
        try:
            transport.subscribe(name, TF_MESSAGE, lambda msg, s=static: on_tf(msg, s),
                                QoS(reliable=True, depth=100, transient_local=static))
        except TransportError as exc:
            skipped.append(f"{name} ({exc})")
    return skipped


__all__ = [
    "Callback",
    "Publisher",
    "QoS",
    "Transport",
    "TransportError",
    "TransportName",
    "make_transport",
    "follow_tf",
    "node_transport",
    "rclpy_available",
    "resolve_transport_name",
]

