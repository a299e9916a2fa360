"""A rosbag2 bag (MCAP or sqlite3, read with rosbags) as per-topic message streams and episode spans.

`load_bag` decodes the topics a reader asks for, each by the role it plays (joint states,
commands, ...), into time-ordered streams, checking that every topic is there with an accepted
message type. `episode_segments` cuts a bag into episodes: the whole bag, or the spans between
start and stop markers (std_msgs/String or Bool, `sim2real.ros.episodes.parse_marker`; an
abort marker discards its span). Times are int64 nanoseconds on the bag's clock; messages
name times as seconds from the bag start (`Bag.at`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError

from sim2real.ros import messages as m
from sim2real.ros.episodes import INDEX_FILE, parse_marker
from sim2real.ros.frames import TF_MESSAGE
from sim2real.ros.observation import POINT_STAMPED
from sim2real.data.episode import DatasetError
from sim2real.data.resample import NS

# role -> (what it gives, accepted message types)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "joints": ("qpos/qvel/tcp_pose", (m.JOINT_STATE,)),
    "object": ("obj_pose", (m.POSE_STAMPED,)),
    "tcp": ("tcp_pose", (m.POSE_STAMPED,)),
    "goal": ("goal_pos", (POINT_STAMPED, m.POSE_STAMPED)),
    "camera": ("rgb", (m.IMAGE, m.COMPRESSED_IMAGE)),
    "command": ("actions", (m.JOINT_TRAJECTORY, m.FLOAT64_MULTI_ARRAY)),
    "intent": ("decided actions", (m.FLOAT64_MULTI_ARRAY,)),
    "success": ("success", (m.BOOL,)),
    "marker": ("episode boundaries", (m.STRING, m.BOOL)),
    "episode": ("episode metadata", (m.STRING,)),
    "tf": ("moving frames", (TF_MESSAGE,)),
    "tf_static": ("fixed frames", (TF_MESSAGE,)),
}
OPTIONAL_ROLES = ("marker", "episode", "intent", "tf", "tf_static")


@dataclass
class Stream:
    """One topic's messages in time order."""

    topic: str
    msgtype: str
    times: np.ndarray  # int64 ns, ascending
    msgs: list[Any]


@dataclass
class Bag:
    """The decoded streams of one bag, by role, with the bag's time span."""

    path: Path
    start: int
    end: int
    streams: dict[str, Stream]  # by role
    meta: dict[str, Any] = field(default_factory=dict)  # merged /sim2real/episode events

    def at(self, t: int) -> str:
        return f"t={(t - self.start) / NS:.3f} s"


@dataclass
class Segment:
    """One episode's span of a bag and its metadata (episode topic and marker fields)."""

    start: int
    end: int
    meta: dict[str, Any]


def message_error(bag: Bag, stream: Stream, i: int, reasons: list[str]) -> DatasetError:
    """A DatasetError naming the bag, the topic and the time of message i."""
    return DatasetError(f"{bag.path}: topic {stream.topic} at {bag.at(int(stream.times[i]))}: " + "; ".join(reasons))


def find_bags(path: str | os.PathLike) -> list[Path]:
    """The bag directories under `path`: a bag, a bag's .mcap/.db3 file, or a directory of bags
    (bag_recorder's output: index.json order when present, else by name; hidden ones skipped)."""
    path = Path(path)
    if path.is_file() and path.suffix in (".mcap", ".db3"):
        path = path.parent
    if (path / "metadata.yaml").is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no rosbag2 bag here (expected a directory with metadata.yaml, or a "
                           f"directory of such bags)")
    bags = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "metadata.yaml").is_file())
    index = path / INDEX_FILE
    if index.is_file():
        try:
            order = [e["bag"] for e in json.loads(index.read_text())["episodes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{index}: unreadable episode index ({exc})") from exc
        rank = {name: i for i, name in enumerate(order)}
        bags.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
    if not bags:
        raise DatasetError(f"{path}: no rosbag2 bags in this directory (no subdirectory with metadata.yaml)")
    return bags


def _stamp(msg: Any, received: int, source: str) -> int:
    if source == "header" and hasattr(msg, "header"):
        stamp = m.stamp_to_ns(msg.header.stamp)
        if stamp > 0:
            return stamp
    return received


def load_bag(path: Path, roles: dict[str, str], time_source: str = "receive") -> Bag:
    """Decode the messages of every topic in `roles` (role -> topic)."""
    by_topic: dict[str, list[str]] = {}
    for role, topic in roles.items():
        by_topic.setdefault(topic, []).append(role)
    try:
        with Reader(path) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            for role, topic in roles.items():
                what, accepted = ROLES[role]
                if topic not in types:
                    if role in OPTIONAL_ROLES:
                        continue
                    hint = ("; a demo without commands (hand-guided, MoveIt, FollowJointTrajectory) reads with "
                            "actions_from: next_state" if role == "command" else "")
                    raise DatasetError(f"{path}: topic {topic} ({what}) is not in the bag; it has "
                                       f"{', '.join(sorted(types)) or 'no topics'}{hint}")
                if types[topic] not in accepted:
                    raise DatasetError(f"{path}: topic {topic} ({what}) has type {types[topic]}, expected "
                                       f"{' or '.join(accepted)}")
            start, end = reader.start_time, reader.end_time - 1
            raw: dict[str, list[tuple[int, Any]]] = {t: [] for t in by_topic if t in types}
            wanted = [c for c in reader.connections if c.topic in raw]
            # An empty connection list would make rosbags yield every message.
            for conn, received, data in reader.messages(wanted) if wanted else ():
                try:
                    msg = m.deserialize(data, conn.msgtype)
                except m.MessageError as exc:
                    raise DatasetError(f"{path}: topic {conn.topic} at t={(received - start) / NS:.3f} s: "
                                       f"undecodable message ({exc})") from exc
                raw[conn.topic].append((_stamp(msg, received, time_source), msg))
    except ReaderError as exc:
        raise DatasetError(f"{path}: not a readable rosbag2 bag (truncated or corrupt?): {exc}") from exc
    streams = {}
    for topic, items in raw.items():
        items.sort(key=lambda item: item[0])  # header stamps need not arrive in order
        stream = Stream(topic, types[topic], np.array([t for t, _ in items], dtype=np.int64), [x for _, x in items])
        for role in by_topic[topic]:
            streams[role] = stream
    bag = Bag(path, start, end, streams)
    if "episode" in streams:
        bag.meta = _episode_events(bag)
    return bag


def _episode_events(bag: Bag) -> dict[str, Any]:
    """bag_recorder's start and stop events on the episode topic, merged (the stop's fields win)."""
    stream = bag.streams["episode"]
    merged: dict[str, Any] = {}
    for t, msg in zip(stream.times, stream.msgs):
        try:
            event = json.loads(msg.data)
        except ValueError as exc:
            raise DatasetError(f"{bag.path}: topic {stream.topic} at {bag.at(t)}: not JSON ({exc})") from exc
        if not isinstance(event, dict):
            raise DatasetError(f"{bag.path}: topic {stream.topic} at {bag.at(t)}: expected a JSON object")
        merged.update({k: v for k, v in event.items() if v is not None and k != "event"})
    return merged


def episode_segments(bag: Bag, mode: str, marker_topic: str) -> list[Segment]:
    markers = bag.streams.get("marker")
    if mode == "auto":
        mode = "marker" if markers is not None and len(markers.times) else "bag"
    if mode == "bag":
        return [Segment(bag.start, bag.end, dict(bag.meta))]
    if markers is None or not len(markers.times):
        raise DatasetError(f"{bag.path}: topic {marker_topic} (episode boundaries) has no messages; "
                           f"set episodes: bag for one episode per bag")
    segments: list[Segment] = []
    open_at: tuple[int, dict[str, Any]] | None = None
    for t, msg in zip(markers.times, markers.msgs):
        try:
            event, fields = parse_marker(msg)
        except ValueError as exc:
            raise DatasetError(f"{bag.path}: topic {markers.topic} at {bag.at(t)}: {exc}") from exc
        if event == "start":
            if open_at is not None:  # as bag_recorder: a start while recording stops the open episode
                segments.append(Segment(open_at[0], int(t), {**bag.meta, **open_at[1]}))
            open_at = (int(t), fields)
        elif event == "abort":
            open_at = None
        elif open_at is not None:
            segments.append(Segment(open_at[0], int(t), {**bag.meta, **open_at[1], **fields}))
            open_at = None
    if open_at is not None:
        raise DatasetError(f"{bag.path}: topic {markers.topic}: the episode started at {bag.at(open_at[0])} has no "
                           f"stop or abort marker (truncated recording?)")
    return segments
