"""A transport whose subscriptions a test feeds by hand (`subs[topic]` holds the callbacks): for
recording bags with the real BagRecorder without DDS."""

from __future__ import annotations

from typing import Any

from robot_bridge.transport import QoS, Transport


class HandTransport(Transport):
    name = "hand"
    capabilities = frozenset({"topics"})

    def __init__(self) -> None:
        self.subs: dict[str, list[Any]] = {}

    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> Any:
        raise NotImplementedError("the test delivers messages itself")

    def subscribe(self, topic: str, type_name: str, callback: Any, qos: QoS = QoS.DEFAULT) -> None:
        self.subs.setdefault(topic, []).append(callback)

    def spin_once(self, timeout_s: float = 0.0) -> int:
        return 0

    def close(self) -> None:
        pass
