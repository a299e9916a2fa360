"""cyclonedds transport, run inside fresh network namespaces (see bridge_netns.py).

Every DDS participant lives in a child process of `run_in_netns`; the pytest process only
compares the JSON the children print.
"""

from __future__ import annotations

import textwrap

import pytest
from bridge_netns import Proc, run_in_netns
from bridge_samples import sample_messages

from sim2real.ros import messages as m

# Snippets run with cwd = repo root; this makes tests/ importable for the shared samples.
PRELUDE = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, "tests")
    from bridge_samples import sample_messages
    from sim2real.ros import messages as m
    from robot_bridge.transport import QoS, TransportError
    from robot_bridge.transport.dds import DdsTransport
    SAMPLES = sample_messages()
    """
)


def snippet(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


PUBLISHER = snippet(
    """
    with DdsTransport("arm_sim") as t:
        pubs = {k: t.publisher(topic, k) for k, topic in
                [(m.JOINT_STATE, "/joint_states"), (m.JOINT_TRAJECTORY, "/arm/joint_trajectory")]}
        for _ in range(500):  # 10 s at most; the driver stops this process much earlier
            for k, pub in pubs.items():
                pub.publish(SAMPLES[k])
            time.sleep(0.02)
    """
)

SUBSCRIBER = snippet(
    """
    got = {m.JOINT_STATE: [], m.JOINT_TRAJECTORY: []}
    with DdsTransport("policy") as t:
        t.subscribe("/joint_states", m.JOINT_STATE, got[m.JOINT_STATE].append, QoS.SENSOR_DATA)
        t.subscribe("/arm/joint_trajectory", m.JOINT_TRAJECTORY, got[m.JOINT_TRAJECTORY].append)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8 and min(len(v) for v in got.values()) < 3:
            t.spin_once(0.05)
        print(json.dumps({"counts": {k: len(v) for k, v in got.items()},
                          "first": {k: m.to_plain(v[0]) for k, v in got.items() if v},
                          "decode_errors": t.decode_errors, "wait_s": time.monotonic() - t0}))
    """
)


def test_dds_publisher_to_dds_subscriber_across_processes() -> None:
    res = run_in_netns(
        [Proc("sub", SUBSCRIBER), Proc("pub", PUBLISHER, background=True)], domain_id=31, timeout_s=15
    )
    report = res["sub"].check().json()
    assert min(report["counts"].values()) >= 3
    samples = sample_messages()
    for type_name in (m.JOINT_STATE, m.JOINT_TRAJECTORY):
        assert report["first"][type_name] == m.to_plain(samples[type_name])
    assert report["decode_errors"] == 0


QOS_CHECKS = snippet(
    """
    def pump(pub, t, msg, until, seconds=1.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and not until():
            pub.publish(msg)
            t.spin_once(0.02)

    out = {}
    with DdsTransport("a") as a, DdsTransport("b") as b:
        # ROS QoS matching: a reliable reader never matches a best-effort writer.
        rel, be = [], []
        b.subscribe("/camera/state", m.STRING, rel.append, QoS.DEFAULT)
        b.subscribe("/camera/state", m.STRING, be.append, QoS.SENSOR_DATA)
        pump(a.publisher("/camera/state", m.STRING, QoS.SENSOR_DATA), b, m.string_msg("x"), lambda: len(be) >= 3)
        b.spin_once(0.1)
        out["best_effort_writer"] = {"reliable_reader": len(rel), "best_effort_reader": len(be)}

        # Transient local: a late subscriber still gets the last `depth` samples; volatile gets none.
        latched = a.publisher("/robot_description", m.STRING, QoS(reliable=True, depth=2, transient_local=True))
        for i in range(3):
            latched.publish(m.string_msg(f"v{i}"))
        late_tl, late_vol = [], []
        b.subscribe("/robot_description", m.STRING, late_tl.append, QoS(depth=10, transient_local=True))
        b.subscribe("/robot_description", m.STRING, late_vol.append, QoS.DEFAULT)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 and len(late_tl) < 2:
            b.spin_once(0.05)
        b.spin_once(0.2)
        out["transient_local"] = [s.data for s in late_tl]
        out["volatile_late"] = len(late_vol)
    print(json.dumps(out))
    """
)


def test_ros_qos_semantics() -> None:
    out = run_in_netns(Proc("qos", QOS_CHECKS), domain_id=32, timeout_s=15)["qos"].check().json()
    assert out["best_effort_writer"]["reliable_reader"] == 0
    assert out["best_effort_writer"]["best_effort_reader"] >= 3
    assert out["transient_local"] == ["v1", "v2"]  # keep-last 2 on the writer side
    assert out["volatile_late"] == 0


API_CHECKS = snippet(
    """
    from robot_bridge.transport.dds_idl import wire_type
    out = {}
    t = DdsTransport("api")
    out["capabilities"] = sorted(t.capabilities)
    got = []
    t.subscribe("/status", m.STRING, got.append)
    pub = t.publisher("/status", m.STRING)
    try:
        pub.publish(m.bool_msg(True))
    except m.MessageError as exc:
        out["wrong_type"] = str(exc)
    try:
        t.publisher("/status", m.BOOL)
    except TransportError as exc:
        out["topic_type_clash"] = str(exc)
    # Cyclone checks the CDR structure on write and receive, but not string encoding: invalid
    # UTF-8 reaches the decoder, which must count and drop it instead of raising into the loop.
    pub._writer.write(wire_type(m.STRING)(b"\\x00\\x01\\x00\\x00\\x03\\x00\\x00\\x00\\xff\\xfe\\x00"))
    handled = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3 and not got:
        pub.publish(m.string_msg("ok"))
        handled += t.spin_once(0.05)
    out["handled"] = handled
    out["received"] = [g.data for g in got[:1]]
    out["decode_errors"] = t.decode_errors
    t.close()
    t.close()  # idempotent
    try:
        t.spin_once(0.0)
    except TransportError as exc:
        out["after_close"] = str(exc)
    try:
        pub.publish(m.string_msg("late"))
    except TransportError as exc:
        out["publish_after_close"] = str(exc)
    # Closing released the shared Cyclone domain, so a new transport on it starts cleanly.
    with DdsTransport("again") as t2:
        out["reopened"] = sorted(t2.capabilities)
    print(json.dumps(out))
    """
)


def test_transport_api_and_errors() -> None:
    out = run_in_netns(Proc("api", API_CHECKS), domain_id=33, timeout_s=15)["api"].check().json()
    assert out["capabilities"] == ["topics"]
    assert "expected std_msgs/msg/String" in out["wrong_type"]
    assert "already used with std_msgs/msg/String" in out["topic_type_clash"]
    assert out["received"] == ["ok"] and out["handled"] >= 1
    assert out["decode_errors"] == 1
    assert "closed" in out["after_close"] and "closed" in out["publish_after_close"]
    assert out["reopened"] == ["topics"]


LEAK_CHECK = snippet(
    """
    import subprocess
    from robot_bridge.netns import network_interfaces

    def tx_packets():
        stats = {}
        for line in open("/proc/self/net/dev").read().splitlines()[2:]:
            name, fields = line.split(":", 1)
            stats[name.strip()] = int(fields.split()[9])  # transmit packets
        return sum(v for k, v in stats.items() if k != "lo")

    out = {"interfaces_at_start": network_interfaces()}
    # A veth pair with an address gives Cyclone a "real" interface to (mis)use; its packet
    # counters show whether anything was sent off loopback. IPv6 off: no autoconf chatter.
    cmds = ["echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
            "ip link add vbr0 type veth peer name vbr1",
            "ip addr add 10.99.0.1/24 dev vbr0", "ip link set vbr1 up", "ip link set vbr0 up"]
    ok = all(subprocess.run(["sh", "-c", c], capture_output=True).returncode == 0 for c in cmds)
    out["veth"] = ok

    def exercise(**kw):
        before = tx_packets()
        with DdsTransport("leak", **kw) as t:
            got = []
            t.subscribe("/chatter", m.STRING, got.append)
            pub = t.publisher("/chatter", m.STRING)
            for _ in range(30):
                pub.publish(m.string_msg("hello"))
                t.spin_once(0.03)
        return {"tx_off_loopback": tx_packets() - before, "received": len(got)}

    if ok:
        out["loopback_config"] = exercise()
        # Control: the same transport told to use the veth must show up in the counters,
        # otherwise the zero above would prove nothing.
        veth_only = ('<CycloneDDS><Domain id="any"><General><Interfaces>'
                     '<NetworkInterface name="vbr0"/></Interfaces></General></Domain></CycloneDDS>')
        out["network_config"] = exercise(allow_network=True, config=veth_only)
    print(json.dumps(out))
    """
)


def test_loopback_config_sends_nothing_off_loopback() -> None:
    out = run_in_netns(Proc("leak", LEAK_CHECK), domain_id=34, timeout_s=20)["leak"].check().json()
    assert out["interfaces_at_start"] == ["lo"]
    if not out["veth"]:
        pytest.skip("cannot create a veth pair in the namespace; only the lo-only check ran")
    assert out["loopback_config"]["received"] > 0
    assert out["loopback_config"]["tx_off_loopback"] == 0
    assert out["network_config"]["tx_off_loopback"] > 0
