"""cyclonedds transport with ROS 2 conventions, for machines without a ROS install (topics only).

What makes plain DDS look like ROS 2 to rclpy nodes (rmw_fastrtps or rmw_cyclonedds):
- DDS topic `rt/<topic>` and type `pkg::msg::dds_::Type_` (see `dds_idl`);
- XCDR1 payloads, little endian, encapsulation `00 01 00 00`: exactly what rosbags writes;
- ROS QoS (reliability, keep-last depth, durability);
- Cyclone's `IgnoreTypeInformation` compatibility setting, without which ROS 2 Kilted's
  Fast DDS 3 and Cyclone never match (`robot_bridge.netns.cyclone_loopback_xml`).

Services and actions do not interoperate across DDS vendors (request ids are encoded
differently), so this transport offers topics only. Raw `sensor_msgs/Image` frames reach
Fast DDS readers intact with reliable QoS and the loopback config's 60 kB fragments; with
best-effort most VGA frames are lost on the way, so prefer `CompressedImage` across vendors.

By default the transport runs with the loopback-only Cyclone configuration; it refuses any
other configuration unless the caller passes `allow_network=True` (deployment on a LAN).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cyclonedds.core import InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from sim2real.ros.messages import MessageError, deserialize, ros_type_name, serialize, type_of
from robot_bridge.netns import cyclone_loopback_xml, is_loopback_only_config
from robot_bridge.transport import Callback, Publisher, QoS, Transport, TransportError
from robot_bridge.transport.dds_idl import dds_topic_name, wire_type

log = logging.getLogger(__name__)

# Upper bound on samples taken from one reader per spin, so one busy topic cannot starve the
# others or hold the loop; the rest are taken on the next spin.
_MAX_TAKE = 256
_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any


def to_cyclone_qos(qos: QoS) -> Qos:
    """ROS QoS -> cyclonedds Qos: reliability, keep-last history and durability, as rmw sets them."""
    reliability = (
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
        if qos.reliable
        else Policy.Reliability.BestEffort
    )
    history = Policy.History.KeepLast(qos.depth)
    if not qos.transient_local:
        return Qos(reliability, history, Policy.Durability.Volatile)
    # Cyclone keeps only one sample for late joiners unless the durability service history says
    # otherwise; ROS semantics are "the last `depth` samples", so match it to the history.
    service = Policy.DurabilityService(
        cleanup_delay=0, history=history, max_samples=-1, max_instances=-1, max_samples_per_instance=-1
    )
    return Qos(reliability, history, Policy.Durability.TransientLocal, service)


@dataclass
class _Domain:
    domain: Domain
    config: str | None
    users: int


# A Cyclone domain (id + config) can exist once per process; transports on the same id share it.
_domains: dict[int, _Domain] = {}
_domains_lock = threading.Lock()


def _acquire_domain(domain_id: int, config: str | None) -> None:
    with _domains_lock:
        entry = _domains.get(domain_id)
        if entry is not None:
            if entry.config != config:
                raise TransportError(
                    f"DDS domain {domain_id}: already open in this process with a different Cyclone config"
                )
            entry.users += 1
            return
        try:
            # An explicit config replaces CYCLONEDDS_URI; None lets Cyclone read the environment.
            domain = Domain(domain_id, config) if config is not None else Domain(domain_id)
        except Exception as exc:  # cyclonedds raises DDSException with a return code only
            raise TransportError(
                f"DDS domain {domain_id}: could not create it ({exc}); a participant created "
                "outside this transport may already hold the domain with another config"
            ) from exc
        _domains[domain_id] = _Domain(domain, config, 1)


def _release_domain(domain_id: int) -> None:
    with _domains_lock:
        entry = _domains.get(domain_id)
        if entry is None:
            return
        entry.users -= 1
        if entry.users == 0:
            del _domains[domain_id]
            entry.domain.__del__()  # cyclonedds deletes entities only through __del__


class DdsPublisher(Publisher):
    """A DataWriter whose samples are the rosbags CDR bytes of each message."""

    def __init__(self, writer: DataWriter, topic: str, type_name: str, check_open: Callable[[], None]) -> None:
        self._writer = writer
        self._check_open = check_open
        self._wire: Any = wire_type(type_name)
        self.topic = topic
        self.type_name = type_name

    def publish(self, msg: Any) -> None:
        self._check_open()
        if type_of(msg) != self.type_name:
            raise MessageError(f"publisher {self.topic}: expected {self.type_name}, got {type_of(msg)}")
        self._writer.write(self._wire(serialize(msg)))


@dataclass
class _Subscription:
    topic: str
    type_name: str
    reader: DataReader
    condition: ReadCondition
    callback: Callback


class DdsTransport(Transport):
    """ROS 2 topics over cyclonedds, messages encoded with rosbags.

    Args:
        node_name: label for logs and the participant (no ROS graph node is announced).
        domain_id: DDS/ROS domain; default `ROS_DOMAIN_ID` from the environment, else 0.
        allow_network: permit a configuration that is not loopback-only. With `config=None` it
            uses Cyclone's own (`CYCLONEDDS_URI` or defaults), as a LAN deployment needs.
        config: Cyclone XML; default the loopback-only config from `robot_bridge.netns`.
        kilted_compat: passed to `cyclone_loopback_xml` when `config` is None.

    Raises:
        TransportError: the config is not loopback-only and `allow_network` is False, or the
            domain cannot be created.
    """

    name = "dds"

    def __init__(
        self,
        node_name: str,
        domain_id: int | None = None,
        *,
        allow_network: bool = False,
        config: str | None = None,
        kilted_compat: bool = True,
    ) -> None:
        self.node_name = node_name
        self.domain_id = int(os.environ.get("ROS_DOMAIN_ID", "0")) if domain_id is None else domain_id
        if config is None and not allow_network:
            config = cyclone_loopback_xml(kilted_compat=kilted_compat)
        if config is not None and not allow_network and not is_loopback_only_config(config):
            raise TransportError(
                f"dds transport {node_name!r}: the Cyclone config is not loopback-only (it must name "
                "only the 'lo' interface, AllowMulticast false and loopback peers); pass "
                "allow_network=True to use the network deliberately"
            )
        self.capabilities = frozenset({"topics"})
        self.decode_errors = 0
        _acquire_domain(self.domain_id, config)
        try:
            self._participant = DomainParticipant(self.domain_id)
        except Exception:
            _release_domain(self.domain_id)
            raise
        self._topics: dict[str, tuple[Topic, str]] = {}
        self._subs: list[_Subscription] = []
        self._writers: list[DataWriter] = []
        self._waitset = WaitSet(self._participant)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"dds transport {self.node_name!r} is closed")

    def _topic(self, topic: str, type_name: str) -> Topic:
        dds_name = dds_topic_name(topic)
        known = self._topics.get(dds_name)
        if known is not None:
            if known[1] != type_name:
                raise TransportError(f"topic {topic}: already used with {known[1]}, now {type_name}")
            return known[0]
        # Topic QoS is left at defaults: rmw layers put the policies on readers and writers.
        handle = Topic(self._participant, dds_name, wire_type(type_name))
        self._topics[dds_name] = (handle, type_name)
        return handle

    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> DdsPublisher:
        self._check_open()
        type_name = ros_type_name(type_name)
        writer = DataWriter(self._participant, self._topic(topic, type_name), qos=to_cyclone_qos(qos))
        self._writers.append(writer)
        return DdsPublisher(writer, topic, type_name, self._check_open)

    def subscribe(self, topic: str, type_name: str, callback: Callback, qos: QoS = QoS.DEFAULT) -> None:
        self._check_open()
        type_name = ros_type_name(type_name)
        reader = DataReader(self._participant, self._topic(topic, type_name), qos=to_cyclone_qos(qos))
        condition = ReadCondition(reader, _ANY_STATE)
        self._waitset.attach(condition)
        self._subs.append(_Subscription(topic, type_name, reader, condition, callback))

    def spin_once(self, timeout_s: float = 0.0) -> int:
        self._check_open()
        if timeout_s > 0:
            self._waitset.wait(duration(seconds=timeout_s))
        handled = 0
        for sub in self._subs:
            for sample in sub.reader.take(N=_MAX_TAKE):
                payload = getattr(sample, "payload", None)
                if payload is None:  # InvalidSample: a writer went away or disposed; no data
                    continue
                try:
                    msg = deserialize(payload, sub.type_name)
                except MessageError as exc:
                    self.decode_errors += 1
                    log.warning("dropped a message on %s: %s", sub.topic, exc)
                    continue
                sub.callback(msg)
                handled += 1
        return handled

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in self._subs:
            self._waitset.detach(sub.condition)
        # Deleting the participant deletes its readers, writers and topics in Cyclone; the
        # Python wrappers then find their handles gone and do nothing when collected.
        self._waitset.__del__()
        self._participant.__del__()
        self._subs.clear()
        self._writers.clear()
        self._topics.clear()
        _release_domain(self.domain_id)
