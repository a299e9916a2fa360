"""Record ROS 2 topics to rosbag2, one bag per episode, with the episode's metadata in the bag.

Layout of an output directory:

    out_dir/index.json         every finished episode's `EpisodeInfo`, in order (a convenience:
                               each bag carries its own copy, see below)
    out_dir/episode_0000/      a rosbag2 bag: metadata.yaml + episode_0000.mcap (or .db3)
    out_dir/.partial-episode_0001-*/episode_0001/   the episode being recorded

A bag is written under a hidden temporary directory and renamed to its final name only once
it is closed, so a crash or kill never leaves a half-written bag under `episode_<k>`; an
interrupted episode's `.partial-*` directory stays behind for inspection and is never indexed.
The layout's names, `EpisodeInfo`, the markers and the readers are sim2real.ros.episodes.

Metadata inside each bag, so a bag copied on its own still says what it is:
- topic `/sim2real/episode` (std_msgs/msg/String): a JSON line at the start
  (`{"event": "start", ...}`) and at the stop (`{"event": "stop", ...}` with success and counts);
  `ros2 bag play` and Foxglove show it like any topic;
- `custom_data["sim2real.episode"]` in metadata.yaml (rosbag2 metadata version >= 6): the final
  `EpisodeInfo` as JSON.

Storage: MCAP by default (rosbag2's default since Iron: one indexed file that Foxglove and the
`mcap` tools read); sqlite3 (`.db3`, Humble's default) as an option. Version: rosbag2 metadata
version 9 (Jazzy, Kilted) by default, 8 (Iron) as an option; rosbags writes no other version,
so `ros2 bag` of older distributions may refuse these bags. Message timestamps are receive times
(as `ros2 bag record`), nudged by 1 ns where needed so they strictly increase within a bag.

Episode boundaries come from code (`start` / `stop` / `abort`) or from a marker topic
(default `/sim2real/episode_marker`, std_msgs/String or Bool, see `parse_marker`). Markers act
at the granularity of one transport spin: the marker subscription is made first, so a start
takes effect before the data taken in the same spin, and a stop after it (`spin_once` applies
it once the spin's callbacks have run). Keep a spin's worth of time between a marker and the
data it delimits where exact boundaries matter, or call `start`/`stop` from code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from robot_bridge.transport import QoS, Transport
from sim2real.ros.episodes import (CUSTOM_DATA_KEY, EPISODE_TOPIC, INDEX_FILE, INDEX_FORMAT, MARKER_TOPIC,
                                   BagRecorderError, EpisodeInfo, parse_marker, read_index)
from sim2real.ros.messages import BOOL, STRING, TYPESTORE, ros_type_name, serialize, string_msg

log = logging.getLogger(__name__)

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
VERSIONS = (8, 9)
_PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: ROS name, `pkg/msg/Type`, and the subscription's QoS.

    A reliable subscription never matches a best-effort publisher; record sensor streams
    published best effort with `QoS.SENSOR_DATA`.
    """

    topic: str
    type_name: str
    qos: QoS = QoS.DEFAULT


def parse_topics(topics: Mapping[str, str] | Sequence[TopicSpec]) -> list[TopicSpec]:
    """`{topic: type}` or TopicSpecs -> TopicSpecs with normalised type names; checks duplicates."""
    specs = [TopicSpec(t, ty) for t, ty in topics.items()] if isinstance(topics, Mapping) else list(topics)
    specs = [dataclasses.replace(s, type_name=ros_type_name(s.type_name)) for s in specs]
    names = [s.topic for s in specs]
    if len(set(names)) != len(names) or EPISODE_TOPIC in names:
        raise BagRecorderError(f"recorded topics: expected unique names other than {EPISODE_TOPIC} (the "
                               f"recorder writes it), got {names}")
    return specs


def _bag_qos(qos: QoS) -> Qos:
    zero = QosTime(0, 0)  # rmw's "unspecified": deadline, lifespan and lease take their defaults
    return Qos(QosHistory.KEEP_LAST, qos.depth,
               QosReliability.RELIABLE if qos.reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if qos.transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


@dataclass
class _OpenBag:
    info: EpisodeInfo
    writer: Writer
    partial: Path
    connections: dict[str, Any]
    last_ns: int = 0


class BagRecorder:
    """Subscribes to topics on a transport and writes each episode to its own rosbag2 bag.

    Args:
        transport: where the messages come from; the caller spins it through `spin_once` here
            (or its own `spin_once`, but then marker stops apply at the next spin here).
        topics: `{topic: type}` or `TopicSpec`s.
        out_dir: output directory; an existing one is continued (numbering after its episodes).
        storage: "mcap" or "sqlite3".
        version: rosbag2 metadata version, 9 or 8.
        marker_topic: topic whose std_msgs/String or Bool messages start and stop episodes;
            None records only on `start`/`stop` calls.
        marker_type: std_msgs/msg/String or std_msgs/msg/Bool.
        task, domain, contract: defaults for every episode's metadata (start arguments and
            marker fields override them); a contract may be a `Contract` or its `to_dict()`.
        clock: wall-clock nanoseconds (tests inject one).
    """

    def __init__(self, transport: Transport, topics: Mapping[str, str] | Sequence[TopicSpec],
                 out_dir: str | os.PathLike[str], *, storage: str = "mcap", version: int = 9,
                 marker_topic: str | None = MARKER_TOPIC, marker_type: str = STRING, task: str | None = None,
                 domain: Any = None, contract: Any = None, clock: Callable[[], int] = time.time_ns) -> None:
        if storage not in STORAGES:
            raise BagRecorderError(f"storage: expected one of {sorted(STORAGES)}, got {storage!r}")
        if version not in VERSIONS:
            raise BagRecorderError(f"version: expected one of {VERSIONS} (what rosbags writes), got {version!r}")
        self.topics = parse_topics(topics)
        self.out_dir = Path(out_dir)
        self.storage, self.version, self._clock = storage, version, clock
        self.defaults: dict[str, Any] = {"task": task, "domain": domain, "contract": _plain_contract(contract)}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.episodes = read_index(self.out_dir) if (self.out_dir / INDEX_FILE).exists() else []
        self.dropped = 0  # messages received while no episode was open
        self.marker_errors = 0
        self._open: _OpenBag | None = None
        self._pending_stop: dict[str, Any] | None = None
        if marker_topic is not None:
            marker_type = ros_type_name(marker_type)
            if marker_type not in (STRING, BOOL):
                raise BagRecorderError(f"marker_type: expected {STRING} or {BOOL}, got {marker_type}")
            # Subscribed first so that, within one spin, a start marker runs before the data.
            transport.subscribe(marker_topic, marker_type, self._on_marker)
        self._transport = transport
        for spec in self.topics:
            transport.subscribe(spec.topic, spec.type_name, self._writer_for(spec.topic), spec.qos)

    @property
    def recording(self) -> bool:
        return self._open is not None

    def start(self, *, task: str | None = None, seed: int | None = None, domain: Any = None,
              contract: Any = None, **extra: Any) -> EpisodeInfo:
        """Open the next episode's bag; None arguments fall back to the recorder's defaults."""
        if self._open is not None:
            raise BagRecorderError(f"start: episode {self._open.info.bag} is still recording; stop or abort it first")
        index = self._next_index()
        name = f"episode_{index:04d}"
        if (self.out_dir / name).exists():
            raise BagRecorderError(f"start: {self.out_dir / name} exists already; refusing to overwrite a bag")
        given = {"task": task, "domain": domain, "contract": _plain_contract(contract)}
        meta = {k: v if v is not None else self.defaults[k] for k, v in given.items()}
        info = EpisodeInfo(index=index, bag=name, storage=self.storage, version=self.version, seed=seed,
                           start_ns=self._clock(), message_counts={s.topic: 0 for s in self.topics},
                           extra=dict(extra), **meta)
        start_text = _event_json("start", info)
        partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL_PREFIX}{name}-", dir=self.out_dir))
        writer = Writer(partial / name, version=self.version, storage_plugin=STORAGES[self.storage])
        try:
            writer.open()
            conns = {s.topic: writer.add_connection(s.topic, s.type_name, typestore=TYPESTORE,
                                                    offered_qos_profiles=[_bag_qos(s.qos)]) for s in self.topics}
            conns[EPISODE_TOPIC] = writer.add_connection(EPISODE_TOPIC, STRING, typestore=TYPESTORE,
                                                         offered_qos_profiles=[_bag_qos(QoS.DEFAULT)])
        except Exception:
            writer.abort()
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self._open = _OpenBag(info, writer, partial, conns)
        self._write(EPISODE_TOPIC, string_msg(start_text))
        log.info("recording %s", name)
        return info

    def stop(self, success: bool | None = None, **extra: Any) -> EpisodeInfo:
        """Close the current bag, move it to its final name and add it to the index."""
        self._pending_stop = None
        bag = self._open
        if bag is None:
            raise BagRecorderError("stop: no episode is recording")
        info = dataclasses.replace(bag.info, stop_ns=self._clock(), extra={**bag.info.extra, **extra},
                                   success=success if success is not None else bag.info.success)
        stop_text = _event_json("stop", info)  # raises before the bag is touched: it stays open
        bag.info = info
        try:
            self._write(EPISODE_TOPIC, string_msg(stop_text))
            bag.writer.set_custom_data(CUSTOM_DATA_KEY, info.to_json())
            bag.writer.close()
            os.rename(bag.partial / info.bag, self.out_dir / info.bag)  # atomic on one filesystem
        except BaseException:
            self.abort()
            raise
        self._open = None
        bag.partial.rmdir()
        self.episodes.append(info)
        self._write_index()
        log.info("recorded %s: %s", info.bag, info.message_counts)
        return info

    def abort(self) -> None:
        """Discard the current episode (nothing is written under its final name)."""
        bag, self._open, self._pending_stop = self._open, None, None
        if bag is None:
            return
        bag.writer.abort()
        shutil.rmtree(bag.partial, ignore_errors=True)
        log.warning("discarded %s", bag.info.bag)

    def spin_once(self, timeout_s: float = 0.0) -> int:
        """Spin the transport once, then apply a stop marker received during the spin."""
        handled = self._transport.spin_once(timeout_s)
        if self._pending_stop is not None and self._open is not None:
            self.stop(**self._pending_stop)
        return handled

    def close(self) -> None:
        """Finish a pending stop; an episode still open is discarded (its outcome is unknown)."""
        if self._pending_stop is not None and self._open is not None:
            self.stop(**self._pending_stop)
        if self._open is not None:
            log.warning("recorder closed while %s was recording", self._open.info.bag)
            self.abort()

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _writer_for(self, topic: str) -> Callable[[Any], None]:
        def on_message(msg: Any) -> None:
            if self._open is None:
                self.dropped += 1
                return
            self._write(topic, msg)
            self._open.info.message_counts[topic] += 1
        return on_message

    def _write(self, topic: str, msg: Any) -> None:
        bag = self._open
        assert bag is not None
        stamp = max(self._clock(), bag.last_ns + 1)
        bag.last_ns = stamp
        bag.writer.write(bag.connections[topic], stamp, serialize(msg))

    def _on_marker(self, msg: Any) -> None:
        try:
            event, fields = parse_marker(msg)
        except ValueError as exc:
            self.marker_errors += 1
            log.warning("ignored a marker: %s", exc)
            return
        if event == "abort":
            self.abort()
        elif event == "stop":
            if self._open is None:
                log.warning("stop marker while no episode is recording: ignored")
            else:
                self._pending_stop = fields
        else:
            if self._pending_stop is not None and self._open is not None:
                self.stop(**self._pending_stop)
            if self._open is not None:
                log.warning("start marker while %s is recording: stopping it first", self._open.info.bag)
                self.stop()
            self.start(**fields)

    def _next_index(self) -> int:
        taken = [e.index for e in self.episodes]
        for path in self.out_dir.glob("episode_*"):
            suffix = path.name.removeprefix("episode_")
            if suffix.isdigit():
                taken.append(int(suffix))
        return max(taken, default=-1) + 1

    def _write_index(self) -> None:
        data = {"format": INDEX_FORMAT, "version": 1, "episodes": [dataclasses.asdict(e) for e in self.episodes]}
        tmp = self.out_dir / f".{INDEX_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.out_dir / INDEX_FILE)


def _event_json(event: str, info: EpisodeInfo) -> str:
    try:
        return json.dumps({"event": event, **dataclasses.asdict(info)})
    except (TypeError, ValueError) as exc:
        raise BagRecorderError(f"{event} {info.bag}: episode metadata must be JSON-able ({exc})") from exc


def _plain_contract(contract: Any) -> dict[str, Any] | None:
    return contract.to_dict() if hasattr(contract, "to_dict") else (dict(contract) if contract else None)


