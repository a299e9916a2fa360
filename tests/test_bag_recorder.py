"""Episode bags (robot_bridge/bag_recorder.py) and scripts/record_demos.py.

Recorder logic runs against an in-process fake transport (no DDS); the end-to-end test records
over the dds transport inside a network namespace (run_in_netns), with the library recorder
writing MCAP and scripts/record_demos.py writing sqlite3 at the same time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bridge_netns import REPO, Proc, run_in_netns

from sim2real.ros import messages as m
from robot_bridge.bag_recorder import BagRecorder, TopicSpec
from sim2real.ros.episodes import (
    EPISODE_TOPIC, BagRecorderError, episode_info, parse_marker, read_bag_messages, read_index,
)
from robot_bridge.transport import Callback, QoS, Transport

JS, CMD, MARKER = "/joint_states", "/arm_controller/joint_trajectory", "/sim2real/episode_marker"
TOPICS = {JS: m.JOINT_STATE, CMD: m.JOINT_TRAJECTORY}


class FakeTransport(Transport):
    """Delivers queued messages in `spin_once`, subscription by subscription like DdsTransport."""

    name = "fake"
    capabilities = frozenset({"topics"})

    def __init__(self) -> None:
        self.subs: list[tuple[str, Callback]] = []
        self.queue: list[tuple[str, Any]] = []

    def publisher(self, topic: str, type_name: str, qos: QoS = QoS.DEFAULT) -> Any:
        raise NotImplementedError

    def subscribe(self, topic: str, type_name: str, callback: Callback, qos: QoS = QoS.DEFAULT) -> None:
        self.subs.append((topic, callback))

    def spin_once(self, timeout_s: float = 0.0) -> int:
        queued, self.queue = self.queue, []
        handled = 0
        for topic, callback in self.subs:
            for msg in (msg for t, msg in queued if t == topic):
                callback(msg)
                handled += 1
        return handled

    def close(self) -> None:
        pass

    def send(self, *items: tuple[str, Any]) -> None:
        self.queue.extend(items)


def js(i: float) -> Any:
    return m.joint_state(["a", "b"], [i, -i], stamp=float(i))


def marker(event: str, **fields: Any) -> tuple[str, Any]:
    return MARKER, m.string_msg(json.dumps({"event": event, **fields}))


def data_of(bag: Path, topic: str) -> list[float]:
    return [float(msg.position[0]) for _, msg in read_bag_messages(bag)[topic]]


def test_parse_marker() -> None:
    assert parse_marker(m.bool_msg(True)) == ("start", {})
    assert parse_marker(m.bool_msg(False)) == ("stop", {})
    assert parse_marker(m.string_msg(" stop ")) == ("stop", {})
    start = m.string_msg('{"event": "start", "seed": 3, "task": "x"}')
    assert parse_marker(start) == ("start", {"seed": 3, "task": "x"})
    for bad in ("go", '{"task": "x"}', '["start"]', '{"event": "start", "seed": true}',
                '{"event": "stop", "success": "yes"}'):
        with pytest.raises(ValueError, match="marker"):
            parse_marker(m.string_msg(bad))


def test_code_boundaries_sqlite3_version8(tmp_path: Path) -> None:
    t = FakeTransport()

    class Contractish:  # anything with to_dict(), as sim2real.contract.Contract
        def to_dict(self) -> dict[str, Any]:
            return {"action_dim": 4}

    rec = BagRecorder(t, TOPICS, tmp_path, storage="sqlite3", version=8, marker_topic=None, task="push_cube",
                      contract=Contractish())
    t.send((JS, js(0.5)))
    rec.spin_once()
    info = rec.start(seed=7, domain={"friction_scale": 0.6}, operator="ana")
    t.send(*[(JS, js(i)) for i in range(5)], (CMD, m.joint_trajectory(["a"], [[1.0]], [0.1])))
    rec.spin_once()
    done = rec.stop(success=True)
    assert (done.bag, done.success) == (info.bag, True) and rec.dropped == 1 and not rec.recording
    bag = tmp_path / "episode_0000"
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (meta["version"], meta["storage_identifier"]) == (8, "sqlite3")
    assert (bag / "episode_0000.db3").is_file()
    assert data_of(bag, JS) == [0.0, 1.0, 2.0, 3.0, 4.0]
    stored = episode_info(bag)
    assert (stored.task, stored.seed, stored.success, stored.domain, stored.contract, stored.extra) == (
        "push_cube", 7, True, {"friction_scale": 0.6}, {"action_dim": 4}, {"operator": "ana"})
    assert stored.message_counts == {JS: 5, CMD: 1}
    assert read_index(tmp_path) == [stored]
    events = [json.loads(msg.data) for _, msg in read_bag_messages(bag)[EPISODE_TOPIC]]
    assert [(e["event"], e["success"]) for e in events] == [("start", None), ("stop", True)]


def test_marker_boundaries(tmp_path: Path) -> None:
    t = FakeTransport()
    rec = BagRecorder(t, TOPICS, tmp_path, domain="target")
    # Same spin as the start marker: recorded (the marker subscription runs first).
    t.send((JS, js(1)), marker("start", task="pick_cube", seed=1))
    rec.spin_once()
    # Same spin as the stop marker: still recorded (the stop applies after the spin).
    t.send((JS, js(2)), marker("stop", success=False))
    rec.spin_once()
    t.send((JS, js(99)), (MARKER, m.string_msg("stop")), (MARKER, m.string_msg("nonsense")))  # outside: dropped
    rec.spin_once()
    t.send((MARKER, m.string_msg("start")), (JS, js(3)))
    rec.spin_once()
    t.send((MARKER, m.string_msg("start")))  # a start while recording closes the open episode first
    rec.spin_once()
    t.send((JS, js(4)), (MARKER, m.string_msg("abort")))  # an abort acts at once: js(4) is dropped
    rec.spin_once()
    assert (rec.dropped, rec.marker_errors, len(rec.episodes)) == (2, 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0000", "episode_0001", "index.json"]
    assert data_of(tmp_path / "episode_0000", JS) == [1.0, 2.0]
    assert data_of(tmp_path / "episode_0001", JS) == [3.0]
    first, second = read_index(tmp_path)
    assert (first.task, first.seed, first.success, first.domain) == ("pick_cube", 1, False, "target")
    assert (second.task, second.success) == (None, None)
    stamps = [s for _, msgs in read_bag_messages(tmp_path / "episode_0000").items() for s, _ in msgs]
    assert len(set(stamps)) == len(stamps)

    # A new recorder on the same directory continues the numbering.
    rec2 = BagRecorder(FakeTransport(), TOPICS, tmp_path, marker_topic=None)
    assert rec2.start().index == 2 and len(rec2.episodes) == 2
    rec2.close()  # discards the open episode
    assert not (tmp_path / "episode_0002").exists()


def test_errors(tmp_path: Path) -> None:
    t = FakeTransport()
    for kwargs, match in [({"storage": "rosbag1"}, "storage"), ({"version": 5}, "version"),
                          ({"marker_type": m.JOINT_STATE}, "marker_type")]:
        with pytest.raises(BagRecorderError, match=match):
            BagRecorder(t, TOPICS, tmp_path, **kwargs)
    with pytest.raises(BagRecorderError, match="unique"):
        BagRecorder(t, [TopicSpec(JS, m.JOINT_STATE), TopicSpec(JS, m.JOINT_STATE)], tmp_path)
    with pytest.raises(BagRecorderError, match="unique"):
        BagRecorder(t, {EPISODE_TOPIC: m.STRING}, tmp_path)
    with pytest.raises(m.MessageError):
        BagRecorder(t, {JS: "sensor_msgs/msg/NoSuchType"}, tmp_path)
    rec = BagRecorder(t, TOPICS, tmp_path, marker_topic=None)
    with pytest.raises(BagRecorderError, match="no episode"):
        rec.stop()
    with pytest.raises(BagRecorderError, match="JSON-able"):
        rec.start(operator=object())
    assert not rec.recording and list(tmp_path.iterdir()) == []
    rec.start()
    with pytest.raises(BagRecorderError, match="still recording"):
        rec.start()
    with pytest.raises(BagRecorderError, match="JSON-able"):
        rec.stop(note={1, 2})
    assert rec.recording and rec.stop(success=True).success  # a bad stop leaves the episode open


def test_failure_during_an_episode_leaves_no_bag(tmp_path: Path) -> None:
    t = FakeTransport()
    with BagRecorder(t, TOPICS, tmp_path, marker_topic=None) as rec:
        rec.start()
        rec.stop(success=True)
    with pytest.raises(RuntimeError, match="demo went wrong"):
        with BagRecorder(t, TOPICS, tmp_path, marker_topic=None) as rec:
            rec.start()
            t.send((JS, js(1)))
            rec.spin_once()
            raise RuntimeError("demo went wrong")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_0000", "index.json"]
    assert [e.bag for e in read_index(tmp_path)] == ["episode_0000"]


KILLED_RECORDER = """
import sys, time
sys.path.insert(0, "tests")
from test_bag_recorder import FakeTransport, TOPICS, JS, js
from robot_bridge.bag_recorder import BagRecorder
t = FakeTransport()
rec = BagRecorder(t, TOPICS, sys.argv[1], marker_topic=None)
rec.start()
t.send(*[(JS, js(i)) for i in range(200)])
rec.spin_once()
print("recording", flush=True)
time.sleep(30)
"""


def test_killed_recording_leaves_no_bag_under_the_final_name(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RECORDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].startswith(".partial-episode_0000-"), names
    assert (tmp_path / names[0] / "episode_0000").is_dir()  # the half bag, kept aside for inspection
    # The next recording in the directory is unaffected.
    t = FakeTransport()
    with BagRecorder(t, TOPICS, tmp_path, marker_topic=None) as rec:
        rec.start()
        rec.stop()
    assert [e.bag for e in read_index(tmp_path)] == ["episode_0000"]
    assert read_bag_messages(tmp_path / "episode_0000")[JS] == []


# --- over DDS, inside a network namespace ---------------------------------------------------

EPISODE_MESSAGES = """
def episode_messages(e):
    names = [f"panda_joint{i}" for i in range(1, 8)]
    return [(m.joint_state(names, [e + 0.01 * i + 0.1 * j for j in range(7)], [0.5] * 7, stamp=10.0 * e + 0.05 * i),
             m.joint_trajectory(names, [[e - 0.01 * i] * 7], [0.05]))
            for i in range(8)]
"""
PRELUDE = textwrap.dedent("""
    import json, sys, time
    from sim2real.ros import messages as m
    from robot_bridge.transport import QoS
    from robot_bridge.transport.dds import DdsTransport
    QOS = QoS(reliable=True, depth=50)
    """) + EPISODE_MESSAGES

PUBLISHER = PRELUDE + textwrap.dedent("""
    READERS = 2  # the library recorder and the script
    with DdsTransport("demo_publisher") as t:
        marker = t.publisher("/sim2real/episode_marker", m.STRING, QOS)
        js = t.publisher("/joint_states", m.JOINT_STATE, QOS)
        cmd = t.publisher("/arm_controller/joint_trajectory", m.JOINT_TRAJECTORY, QOS)
        writers = [p._writer for p in (marker, js, cmd)]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and min(w.get_publication_matched_status().current_count
                                                 for w in writers) < READERS:
            time.sleep(0.05)
        matched_s = time.monotonic() - t0
        time.sleep(0.3)
        for i in range(3):  # before any episode: dropped
            js.publish(m.joint_state(["x"], [float(i)]))
        time.sleep(0.3)
        for e in range(2):
            marker.publish(m.string_msg(json.dumps({"event": "start", "task": "pick_cube", "seed": 100 + e,
                                                    "domain": "target"})))
            time.sleep(0.3)
            for state, command in episode_messages(e):
                js.publish(state)
                cmd.publish(command)
                time.sleep(0.02)
            time.sleep(0.3)
            marker.publish(m.string_msg(json.dumps({"event": "stop", "success": e == 0})))
            time.sleep(0.3)
    print(json.dumps({"matched_s": matched_s}))
    """)

RECORDER = PRELUDE + textwrap.dedent("""
    from robot_bridge.bag_recorder import BagRecorder, TopicSpec
    with DdsTransport("recorder") as t:
        rec = BagRecorder(t, [TopicSpec("/joint_states", m.JOINT_STATE, QOS),
                              TopicSpec("/arm_controller/joint_trajectory", m.JOINT_TRAJECTORY, QOS)],
                          sys.argv[1] if len(sys.argv) > 1 else OUT, storage="mcap")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 25 and len(rec.episodes) < 2:
            rec.spin_once(0.02)
        rec.close()
    print(json.dumps({"episodes": len(rec.episodes), "dropped": rec.dropped, "marker_errors": rec.marker_errors}))
    """)

SCRIPT = """
import subprocess, sys
sys.exit(subprocess.call([sys.executable, "scripts/record_demos.py", "out_dir=" + OUT, "storage=sqlite3",
    "episodes=1", "transport=dds", "startup_s=0", "max_duration_s=25",
    "topics=[{topic:/joint_states,type:sensor_msgs/msg/JointState},"
    "{topic:/arm_controller/joint_trajectory,type:trajectory_msgs/msg/JointTrajectory}]"]))
"""


def test_record_episodes_over_dds(tmp_path: Path) -> None:
    mcap_dir, sqlite_dir = tmp_path / "mcap", tmp_path / "sqlite3"
    res = run_in_netns(
        [Proc("recorder", f"OUT = {str(mcap_dir)!r}\n" + RECORDER),
         Proc("script", f"OUT = {str(sqlite_dir)!r}\n" + SCRIPT),
         Proc("publisher", PUBLISHER)],
        domain_id=71, timeout_s=40)
    report = res["recorder"].check().json()
    res["publisher"].check()
    assert "recorded episodes=1" in res["script"].check().stdout
    assert report == {"episodes": 2, "dropped": 3, "marker_errors": 0}

    scope: dict[str, Any] = {"m": m}
    exec(EPISODE_MESSAGES, scope)
    for e in range(2):
        bag = mcap_dir / f"episode_{e:04d}"
        assert (bag / f"episode_{e:04d}.mcap").is_file()
        got = read_bag_messages(bag)
        expected = scope["episode_messages"](e)
        assert [msg for _, msg in got[JS]] and len(got[JS]) == len(got[CMD]) == len(expected)
        for k, (state, command) in enumerate(expected):
            assert m.messages_equal(got[JS][k][1], state), (e, k)
            assert m.messages_equal(got[CMD][k][1], command), (e, k)
        stamps = sorted(s for msgs in got.values() for s, _ in msgs)
        assert [s for s, _ in got[JS]] == sorted(s for s, _ in got[JS]) and len(set(stamps)) == len(stamps)
        info = episode_info(bag)
        assert (info.task, info.seed, info.domain, info.success) == ("pick_cube", 100 + e, "target", e == 0)
        assert info.message_counts == {JS: 8, CMD: 8} and info.start_ns < info.stop_ns
        assert [json.loads(msg.data)["event"] for _, msg in got[EPISODE_TOPIC]] == ["start", "stop"]
    assert [e.bag for e in read_index(mcap_dir)] == ["episode_0000", "episode_0001"]
    assert sorted(p.name for p in mcap_dir.iterdir()) == ["episode_0000", "episode_0001", "index.json"]

    # The script's sqlite3 bag holds the first episode, message for message.
    sq = sqlite_dir / "episode_0000"
    assert (sq / "episode_0000.db3").is_file() and [e.bag for e in read_index(sqlite_dir)] == ["episode_0000"]
    ours, theirs = read_bag_messages(sq), read_bag_messages(mcap_dir / "episode_0000")
    for topic in (JS, CMD):
        assert len(ours[topic]) == len(theirs[topic]) == 8
        assert all(m.messages_equal(a, b) for (_, a), (_, b) in zip(ours[topic], theirs[topic]))
    assert episode_info(sq).storage == "sqlite3" and episode_info(sq).seed == 100
    assert np.isclose(ours[JS][0][1].position[0], 0.0)


def load_script() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("record_demos", REPO / "scripts" / "record_demos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["record_demos"] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)  # registers the config schema
    return module


def test_record_demos_config_and_bad_options() -> None:
    from sim2real.config import compose_config, to_dataclass

    script = load_script()
    cfg = to_dataclass(compose_config("record_demos", ["meta.task=pick_cube", "storage=sqlite3"]), script.RecordConfig)
    assert (cfg.storage, cfg.meta.task, cfg.loopback, cfg.boundaries) == ("sqlite3", "pick_cube", True, "marker")
    assert {t.topic for t in cfg.topics} >= {"/joint_states", "/arm_controller/joint_trajectory"}
    # Checked before any transport starts.
    for change, match in [({"boundaries": "manual"}, "boundaries"), ({"topics": []}, "topics")]:
        bad = script.RecordConfig(**{**cfg.__dict__, **change})
        with pytest.raises(ValueError, match=match):
            script.record(bad)
