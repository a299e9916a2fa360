"""Loopback-only DDS settings and network-namespace wrapping: the one helper for DDS processes.

DDS discovery multicasts on every interface by default. Every test, benchmark and demo that
starts a DDS participant (cyclonedds or rclpy) therefore

1. runs inside a fresh network namespace whose only interface is `lo` (`netns_command`), and
2. uses loopback-only settings as well (`loopback_env`, `cyclone_loopback_xml`),

so that nothing can leave the machine even if one of the two layers is misconfigured.
A deployment to a real arm on a LAN turns the settings off explicitly (`allow_network=True` on
the transports) and does not use this module.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

# Shell run as the namespace's first process: `unshare -n` starts with `lo` down, and DDS on
# loopback needs it up. `exec "$@"` replaces the shell so signals reach the real command.
_NETNS_SHELL = 'ip link set lo up && exec "$@"'

_LOOPBACK_NAMES = {"lo", "localhost", "127.0.0.1", "::1"}


def cyclone_loopback_xml(kilted_compat: bool = True, large_fragments: bool = True) -> str:
    """Cyclone DDS configuration that only uses the loopback interface, without multicast.

    Args:
        kilted_compat: add `Compatibility/IgnoreTypeInformation`. ROS 2 Kilted's Fast DDS 3
            announces type objects Cyclone rejects, and the two sides never match without it;
            Jazzy matches either way, so it is on by default.
        large_fragments: FragmentSize 60000 B / MaxMessageSize 65000 B. With Cyclone's defaults,
            raw images sent to Fast DDS readers arrive only partly (10 of 150 frames measured);
            loopback's 64 KiB MTU allows the large fragments.

    Returns:
        XML text usable as `CYCLONEDDS_URI` or as `cyclonedds.domain.Domain(config=...)`.
    """
    sizes = (
        "<FragmentSize>60000B</FragmentSize><MaxMessageSize>65000B</MaxMessageSize>"
        if large_fragments
        else ""
    )
    compat = (
        "<Compatibility><IgnoreTypeInformation>1.15</IgnoreTypeInformation></Compatibility>"
        if kilted_compat
        else ""
    )
    return (
        '<CycloneDDS xmlns="https://cdds.io/config"><Domain id="any">'
        "<General>"
        '<Interfaces><NetworkInterface name="lo" multicast="false"/></Interfaces>'
        "<AllowMulticast>false</AllowMulticast>"
        f"{sizes}"
        "</General>"
        "<Discovery>"
        "<ParticipantIndex>auto</ParticipantIndex>"
        "<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers>'
        "</Discovery>"
        f"{compat}"
        "</Domain></CycloneDDS>"
    )


def is_loopback_only_config(xml: str) -> bool:
    """True when a Cyclone XML config pins DDS to loopback: only `lo`, no multicast, local peers.

    A config that names no interface lets Cyclone pick one, so it is not loopback-only.
    File URIs and non-XML values are not inspected and count as not loopback-only.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return False

    def local(tag: str) -> list[ET.Element]:
        return [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == tag]

    interfaces = local("NetworkInterface")
    if not interfaces:
        return False
    for iface in interfaces:
        names = {iface.get("name"), iface.get("address")} - {None}
        if not names or not names <= _LOOPBACK_NAMES:
            return False
    multicast = [el.text.strip().lower() for el in local("AllowMulticast") if el.text]
    if multicast != ["false"]:
        return False
    peers = [el.get("address", "") for el in local("Peer")]
    return all(p.split(":")[0] in _LOOPBACK_NAMES for p in peers)


def loopback_env(domain_id: int, kilted_compat: bool = True) -> dict[str, str]:
    """Environment variables that keep cyclonedds and rclpy (Fast DDS) on loopback.

    `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` is the Jazzy/Kilted setting; `ROS_LOCALHOST_ONLY=1`
    is its deprecated predecessor (still honoured, with a warning) for older installs.
    """
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID: expected 0..232, got {domain_id}")
    return {
        "CYCLONEDDS_URI": cyclone_loopback_xml(kilted_compat=kilted_compat),
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",
    }


def netns_command(argv: Sequence[str]) -> list[str]:
    """Wrap a command so it runs in a fresh network namespace with only `lo`, brought up.

    Root uses `unshare -n`; other users add `-r` (a user namespace mapping them to root), which
    works where unprivileged user namespaces are enabled. Children of the command share the
    namespace, so a driver can start several DDS processes that see each other and nothing else.
    """
    if not argv:
        raise ValueError("netns_command: empty command")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
    return [*unshare, "sh", "-c", _NETNS_SHELL, "sh", *argv]


def network_interfaces() -> list[str]:
    """Interfaces of this process's network namespace (from /proc/self/net/dev, not /sys)."""
    # /sys/class/net shows the namespace sysfs was mounted in; /proc/self/net follows the process.
    with open("/proc/self/net/dev", encoding="ascii") as f:
        lines = f.read().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def in_network_namespace() -> bool:
    """True when this process's network namespace has no interface but loopback.

    That is the property the network rule needs (no route off the machine), whatever created
    the namespace.
    """
    try:
        return set(network_interfaces()) <= {"lo"}
    except OSError:
        return False
