"""The episode bags sim2real records: names, metadata and markers, and reading them back.

robot_bridge.bag_recorder writes one rosbag2 bag per episode under an output directory with an
`index.json`; each bag carries its `EpisodeInfo` in metadata.yaml (custom_data) and on the
`/sim2real/episode` topic. The data readers and the recorder share the definitions here, so
reading a recording needs no transport and no live ROS graph.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rosbags.rosbag2 import Reader

from sim2real.ros.messages import BOOL, deserialize

EPISODE_TOPIC = "/sim2real/episode"
MARKER_TOPIC = "/sim2real/episode_marker"
CUSTOM_DATA_KEY = "sim2real.episode"
INDEX_FILE = "index.json"
INDEX_FORMAT = "sim2real-rosbag2-episodes"
MARKER_EVENTS = ("start", "stop", "abort")


class BagRecorderError(RuntimeError):
    """A recording could not start, finish or be read; the text names the bag and the cause."""


@dataclass
class EpisodeInfo:
    """What one recorded episode is; stored in the bag, in the start/stop messages and the index.

    Attributes:
        index: k of `episode_<k>`, unique within an output directory.
        bag: the bag's directory name under the output directory.
        storage / version: rosbag2 storage plugin ("mcap", "sqlite3") and metadata version.
        task, seed, domain: what was demonstrated; domain is a preset name or a JSON-able dict.
        success: whether the demonstration solved the task (None: not stated).
        contract: the observation/action contract as `Contract.to_dict()`, when known.
        start_ns / stop_ns: wall-clock nanoseconds of the start and stop calls or markers.
        message_counts: messages written per recorded topic (the episode topic excluded).
        extra: any further JSON-able fields given at start or stop.
    """

    index: int
    bag: str
    storage: str
    version: int
    task: str | None = None
    seed: int | None = None
    success: bool | None = None
    domain: Any = None
    contract: dict[str, Any] | None = None
    start_ns: int = 0
    stop_ns: int | None = None
    message_counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> EpisodeInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = set(data) - names, {"index", "bag", "storage", "version"} - set(data)
        if unknown or missing:
            raise BagRecorderError(f"{source}: episode info has unknown fields {sorted(unknown)} or lacks "
                                   f"{sorted(missing)} (expected fields: {sorted(names)})")
        return cls(**data)


def parse_marker(msg: Any) -> tuple[str, dict[str, Any]]:
    """(event, fields) of a marker message.

    std_msgs/Bool: True starts an episode, False stops it. std_msgs/String: "start", "stop",
    "abort", or a JSON object with "event" and optional fields for the episode, e.g.
    `{"event": "start", "task": "pick_cube", "seed": 3, "domain": "target"}` or
    `{"event": "stop", "success": true}`.

    Raises:
        ValueError: not a marker; the text says what was expected.
    """
    if msg.__msgtype__ == BOOL:
        return ("start" if msg.data else "stop"), {}
    text = msg.data.strip()
    if not text.startswith("{"):
        if text not in MARKER_EVENTS:
            raise ValueError(f"marker {text!r}: expected one of {MARKER_EVENTS} or a JSON object with 'event'")
        return text, {}
    fields = json.loads(text)
    if not isinstance(fields, dict) or fields.get("event") not in MARKER_EVENTS:
        raise ValueError(f"marker {text!r}: expected a JSON object whose 'event' is one of {MARKER_EVENTS}")
    event = fields.pop("event")
    for key, kind in (("task", str), ("seed", int), ("success", bool), ("contract", dict)):
        value = fields.get(key)
        # bool is an int subclass; a seed of `true` is a mistake, not seed 1.
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ValueError(f"marker field {key!r}: expected {kind.__name__}, got {value!r}")
    return event, fields


# --- reading --------------------------------------------------------------------------------


def read_index(out_dir: str | os.PathLike[str]) -> list[EpisodeInfo]:
    """The episodes listed in `out_dir/index.json`."""
    path = Path(out_dir) / INDEX_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BagRecorderError(f"{path}: cannot read the episode index ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise BagRecorderError(f"{path}: expected a JSON object with format {INDEX_FORMAT!r}")
    return [EpisodeInfo.from_dict(e, f"{path}: episodes[{i}]") for i, e in enumerate(data["episodes"])]


def episode_info(bag: str | os.PathLike[str]) -> EpisodeInfo:
    """The `EpisodeInfo` stored in a bag's metadata.yaml (custom_data)."""
    path = Path(bag) / "metadata.yaml"
    try:
        meta = yaml.safe_load(path.read_text())["rosbag2_bagfile_information"]
        raw = (meta.get("custom_data") or {})[CUSTOM_DATA_KEY]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise BagRecorderError(f"{path}: no custom_data[{CUSTOM_DATA_KEY!r}] with episode info ({exc!r})") from exc
    return EpisodeInfo.from_dict(json.loads(raw), f"{path}: custom_data[{CUSTOM_DATA_KEY!r}]")


def read_bag_messages(bag: str | os.PathLike[str]) -> dict[str, list[tuple[int, Any]]]:
    """Every message of a bag as {topic: [(timestamp_ns, rosbags message), ...]} in bag order.

    Every topic the bag declares is a key, also those without messages.
    """
    out: dict[str, list[tuple[int, Any]]] = {}
    with Reader(Path(bag)) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, stamp, raw in reader.messages():
            out[conn.topic].append((stamp, deserialize(raw, conn.msgtype)))
    return out
