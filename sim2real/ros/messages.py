"""ROS 2 messages for the bridge: one rosbags typestore, typed constructors and the CDR codec.

Every part of the bridge represents messages as the rosbags dataclasses of one typestore
(`TYPESTORE`, ROS 2 Jazzy definitions; the types used here are identical in Kilted). Both
transports move bytes produced by `serialize` and decode with `deserialize`, so the wire format
is decided in this one place.

Type names use the ROS 2 interface form `pkg/msg/Type`; `pkg/Type` is accepted and normalised.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_T = TYPESTORE.types

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
FLOAT64_MULTI_ARRAY = "std_msgs/msg/Float64MultiArray"
BOOL = "std_msgs/msg/Bool"
STRING = "std_msgs/msg/String"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

# The message types the bridge publishes or subscribes to; tests check each of them on every path.
BRIDGE_TYPES: tuple[str, ...] = (
    JOINT_STATE,
    IMAGE,
    COMPRESSED_IMAGE,
    POSE_STAMPED,
    JOINT_TRAJECTORY,
    FLOAT64_MULTI_ARRAY,
    BOOL,
    STRING,
    DIAGNOSTIC_ARRAY,
)

# Raw image encodings we build from arrays: (dtype, channels) -> ROS encoding.
_IMAGE_ENCODINGS: dict[tuple[str, int], str] = {
    ("uint8", 1): "mono8",
    ("uint8", 3): "rgb8",
    ("uint8", 4): "rgba8",
    ("uint16", 1): "mono16",
    ("float32", 1): "32FC1",
}
_ENCODING_LAYOUT: dict[str, tuple[str, int]] = {v: k for k, v in _IMAGE_ENCODINGS.items()}
_ENCODING_LAYOUT.update({"bgr8": ("uint8", 3), "bgra8": ("uint8", 4), "16UC1": ("uint16", 1)})


class MessageError(ValueError):
    """A message could not be built, encoded or decoded; the text names type and cause."""


def ros_type_name(type_name: str) -> str:
    """Normalise `pkg/Type` or `pkg/msg/Type` to `pkg/msg/Type` and check the store knows it.

    Raises:
        MessageError: the name is malformed or not in the typestore.
    """
    parts = type_name.strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise MessageError(f"message type {type_name!r}: expected 'pkg/msg/Type' or 'pkg/Type'")
    name = "/".join(parts)
    if name not in _T:
        raise MessageError(
            f"message type {name!r} is not in the rosbags ROS2_JAZZY typestore "
            f"(bridge types: {', '.join(BRIDGE_TYPES)})"
        )
    return name


def type_of(msg: object) -> str:
    """The `pkg/msg/Type` name of a rosbags message instance."""
    name = getattr(msg, "__msgtype__", None)
    if not isinstance(name, str):
        raise MessageError(f"{type(msg).__name__} is not a rosbags message (no __msgtype__)")
    return name


# --- time ------------------------------------------------------------------------------------


def stamp_from_ns(ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds (exact, no float rounding)."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return _T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def stamp_from_seconds(seconds: float) -> Any:
    """builtin_interfaces/Time from seconds, rounded to the nearest nanosecond."""
    if not math.isfinite(seconds):
        raise MessageError(f"stamp: expected a finite number of seconds, got {seconds!r}")
    return stamp_from_ns(round(seconds * 1e9))


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time or Duration."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_seconds(stamp: Any) -> float:
    """Seconds (float) of a builtin_interfaces/Time or Duration."""
    return stamp_to_ns(stamp) / 1e9


def now_stamp() -> Any:
    """The wall-clock time as builtin_interfaces/Time (what ROS nodes stamp with by default)."""
    return stamp_from_ns(time.time_ns())


def duration_from_seconds(seconds: float) -> Any:
    """builtin_interfaces/Duration from seconds (used for `time_from_start`)."""
    sec, nanosec = divmod(round(seconds * 1e9), 1_000_000_000)
    return _T["builtin_interfaces/msg/Duration"](sec=sec, nanosec=nanosec)


def _time(stamp: float | Any | None) -> Any:
    if stamp is None:
        return now_stamp()
    if isinstance(stamp, (int, float)):
        return stamp_from_seconds(float(stamp))
    return stamp


def header(frame_id: str = "", stamp: float | Any | None = None) -> Any:
    """std_msgs/Header; `stamp` is seconds, a Time, or None for now."""
    return _T["std_msgs/msg/Header"](stamp=_time(stamp), frame_id=frame_id)


# --- constructors ----------------------------------------------------------------------------


def _f64(values: Sequence[float] | np.ndarray | None, field: str, n: int | None = None) -> np.ndarray:
    # rosbags serialises numeric sequences from numpy arrays only (plain lists fail in its codec).
    arr = np.asarray([] if values is None else values, dtype=np.float64).reshape(-1)
    if n is not None and arr.size not in (0, n):
        raise MessageError(f"{field}: expected 0 or {n} values, got {arr.size}")
    return arr


def joint_state(
    names: Sequence[str],
    position: Sequence[float] | np.ndarray,
    velocity: Sequence[float] | np.ndarray | None = None,
    stamp: float | Any | None = None,
    effort: Sequence[float] | np.ndarray | None = None,
    frame_id: str = "",
) -> Any:
    """sensor_msgs/JointState. Velocity and effort may be empty, else one value per joint."""
    names = list(names)
    pos = _f64(position, "JointState.position")
    if pos.size != len(names):
        raise MessageError(f"JointState.position: expected {len(names)} values, got {pos.size}")
    return _T[JOINT_STATE](
        header=header(frame_id, stamp),
        name=names,
        position=pos,
        velocity=_f64(velocity, "JointState.velocity", len(names)),
        effort=_f64(effort, "JointState.effort", len(names)),
    )


def joint_trajectory(
    names: Sequence[str],
    positions: Sequence[Sequence[float]] | np.ndarray,
    time_from_start: Sequence[float],
    velocities: Sequence[Sequence[float]] | np.ndarray | None = None,
    stamp: float | Any = 0.0,
    frame_id: str = "",
) -> Any:
    """trajectory_msgs/JointTrajectory with one point per row of `positions`.

    `stamp` defaults to 0, which joint_trajectory_controller reads as "start on receipt".
    """
    names = list(names)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 1:
        pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] != len(names):
        raise MessageError(f"JointTrajectory.positions: expected shape (T, {len(names)}), got {pos.shape}")
    times = list(time_from_start)
    if len(times) != pos.shape[0]:
        raise MessageError(f"JointTrajectory.time_from_start: expected {pos.shape[0]} values, got {len(times)}")
    vel = None if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(pos.shape)
    empty = np.zeros(0, dtype=np.float64)
    points = [
        _T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=pos[i].copy(),
            velocities=empty if vel is None else vel[i].copy(),
            accelerations=empty,
            effort=empty,
            time_from_start=duration_from_seconds(times[i]),
        )
        for i in range(pos.shape[0])
    ]
    return _T[JOINT_TRAJECTORY](header=header(frame_id, stamp), joint_names=names, points=points)


def float64_multi_array(values: Sequence[float] | np.ndarray) -> Any:
    """std_msgs/Float64MultiArray with an empty layout (what forward_command_controller expects)."""
    layout = _T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return _T[FLOAT64_MULTI_ARRAY](layout=layout, data=_f64(values, "Float64MultiArray.data"))


def pose_stamped(
    frame: str,
    position: Sequence[float],
    quat_xyzw: Sequence[float],
    stamp: float | Any | None = None,
) -> Any:
    """geometry_msgs/PoseStamped; the quaternion is in ROS order (x, y, z, w)."""
    if len(position) != 3 or len(quat_xyzw) != 4:
        raise MessageError(
            f"PoseStamped: expected 3 position and 4 quaternion values, got {len(position)} and {len(quat_xyzw)}"
        )
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in quat_xyzw)
    pose = _T["geometry_msgs/msg/Pose"](
        position=_T["geometry_msgs/msg/Point"](x=x, y=y, z=z),
        orientation=_T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
    )
    return _T[POSE_STAMPED](header=header(frame, stamp), pose=pose)


def bool_msg(value: bool) -> Any:
    """std_msgs/Bool."""
    return _T[BOOL](data=bool(value))


def string_msg(text: str) -> Any:
    """std_msgs/String (status and diagnostics lines)."""
    return _T[STRING](data=str(text))


def compressed_image(
    data: bytes, fmt: str = "jpeg", stamp: float | Any | None = None, frame_id: str = ""
) -> Any:
    """sensor_msgs/CompressedImage from already encoded JPEG or PNG bytes."""
    if fmt not in ("jpeg", "png"):
        raise MessageError(f"CompressedImage.format: expected 'jpeg' or 'png', got {fmt!r}")
    return _T[COMPRESSED_IMAGE](
        header=header(frame_id, stamp), format=fmt, data=np.frombuffer(bytes(data), dtype=np.uint8)
    )


def image(
    array: np.ndarray, encoding: str | None = None, stamp: float | Any | None = None, frame_id: str = ""
) -> Any:
    """sensor_msgs/Image from an HxW or HxWxC array; the encoding is inferred unless given."""
    arr = np.ascontiguousarray(array)
    if arr.ndim not in (2, 3):
        raise MessageError(f"Image: expected an HxW or HxWxC array, got shape {arr.shape}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    layout = (arr.dtype.name, channels)
    if encoding is None:
        if layout not in _IMAGE_ENCODINGS:
            raise MessageError(f"Image: no ROS encoding for dtype {layout[0]} with {channels} channels")
        encoding = _IMAGE_ENCODINGS[layout]
    elif _ENCODING_LAYOUT.get(encoding) != layout:
        raise MessageError(f"Image.encoding {encoding!r} does not match dtype {layout[0]} x {channels}")
    return _T[IMAGE](
        header=header(frame_id, stamp),
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=encoding,
        is_bigendian=int(arr.dtype.byteorder == ">"),
        step=arr.strides[0],
        data=arr.view(np.uint8).reshape(-1),
    )


def image_to_array(msg: Any) -> np.ndarray:
    """HxW(xC) array view of a sensor_msgs/Image in one of the encodings `image` produces."""
    if msg.encoding not in _ENCODING_LAYOUT:
        raise MessageError(f"Image.encoding {msg.encoding!r} is not supported ({sorted(_ENCODING_LAYOUT)})")
    dtype_name, channels = _ENCODING_LAYOUT[msg.encoding]
    dtype = np.dtype(dtype_name).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * dtype.itemsize
    arr = rows[:, :row_bytes].copy().view(dtype).reshape(msg.height, msg.width, channels)
    return arr[:, :, 0] if channels == 1 else arr


# --- codec -----------------------------------------------------------------------------------


def serialize(msg: object, type_name: str | None = None) -> bytes:
    """CDR bytes (little endian, with the 4-byte encapsulation header) of a rosbags message."""
    actual = type_of(msg)
    if type_name is not None and ros_type_name(type_name) != actual:
        raise MessageError(f"serialize: message is {actual}, but {type_name} was requested")
    try:
        return bytes(TYPESTORE.serialize_cdr(msg, actual))
    except (struct.error, AttributeError, TypeError, ValueError) as exc:
        raise MessageError(f"serialize {actual}: {exc}") from exc


def deserialize(data: bytes | memoryview, type_name: str, *, strict: bool = False) -> Any:
    """Decode CDR bytes (with encapsulation header) into a rosbags message.

    Non-strict decoding ignores bytes after the message. rclpy's `serialize_message` (Fast CDR)
    and some DDS writers append alignment padding beyond the 3 bytes rosbags accepts; ROS's own
    deserialisers ignore it too. `strict=True` applies rosbags' own size check.

    Raises:
        MessageError: unknown type, bad header, truncated or malformed payload.
    """
    name = ros_type_name(type_name)
    raw = memoryview(bytes(data)) if not isinstance(data, memoryview) else data
    if strict:
        try:
            return TYPESTORE.deserialize_cdr(raw, name)
        except (SerdeError, struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise MessageError(f"deserialize {name} ({len(raw)} bytes): {exc}") from exc
    if len(raw) < 4 or bytes(raw[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise MessageError(
            f"deserialize {name}: expected a CDR header 00 00 or 00 01, got {bytes(raw[:4]).hex() or 'nothing'}"
        )
    msgdef = TYPESTORE.get_msgdef(name)
    decode = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    try:
        msg, _end = decode(raw[4:], 0, msgdef.cls, TYPESTORE)
    except (SerdeError, struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise MessageError(f"deserialize {name} ({len(raw)} bytes): {exc}") from exc
    return msg


# --- comparison and plain data ----------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """Nested dicts, lists and numbers for a message (JSON-ready; `__msgtype__` kept as a key)."""
    if hasattr(value, "__msgtype__"):
        out = {"__msgtype__": value.__msgtype__}
        for field in value.__dataclass_fields__:
            if field != "__msgtype__":
                out[field] = to_plain(getattr(value, field))
        return out
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def messages_equal(a: Any, b: Any) -> bool:
    """Field-by-field equality (the dataclasses' own `==` fails on numpy array fields)."""
    return to_plain(a) == to_plain(b)
