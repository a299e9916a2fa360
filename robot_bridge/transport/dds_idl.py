"""cyclonedds IDL types for ROS 2 messages, generated from the rosbags typestore.

ROS 2 maps `pkg/msg/Type` to the DDS type `pkg::msg::dds_::Type_` (rmw's name mangling) and
publishes on `rt/<topic>`. cyclonedds needs an `IdlStruct` class per type to create a topic:
it supplies the type name, the key layout (ROS messages have no keys) and the XTypes type
information announced in discovery, which other DDS vendors check when matching.

Serialising through cyclonedds' own IdlStruct is ~300x slower than rosbags for a VGA image,
so the transport uses `wire_type`: a twin class with the same name and layout whose samples
carry bytes already encoded by rosbags, and whose `deserialize` hands back the raw bytes for
the transport to decode (a decode error then drops one message, not a whole `take`).
`idl_type`/`to_idl` build ordinary IdlStruct instances so the tests can check that cyclonedds'
own encoding equals rosbags'.
"""

from __future__ import annotations

import keyword
from functools import cache
from typing import Any

from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as t
from rosbags.interfaces import Nodetype

from sim2real.ros.messages import TYPESTORE, MessageError, ros_type_name

# ROS 2 .msg primitives -> cyclonedds annotated types (ROS `char` is an unsigned 8-bit int).
_BASE: dict[str, Any] = {
    "bool": bool,
    "byte": t.byte,
    "octet": t.byte,
    "char": t.uint8,
    "int8": t.int8,
    "uint8": t.uint8,
    "int16": t.int16,
    "uint16": t.uint16,
    "int32": t.int32,
    "uint32": t.uint32,
    "int64": t.int64,
    "uint64": t.uint64,
    "float32": t.float32,
    "float64": t.float64,
}


def dds_type_name(type_name: str) -> str:
    """`pkg/msg/Type` -> `pkg::msg::dds_::Type_` (the name ROS 2 rmw layers use on the wire)."""
    pkg, kind, name = ros_type_name(type_name).split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


def ros_type_from_dds(dds_name: str) -> str:
    """Inverse of `dds_type_name`; raises `MessageError` for non-ROS DDS type names."""
    parts = dds_name.split("::")
    if len(parts) != 4 or parts[2] != "dds_" or not parts[3].endswith("_"):
        raise MessageError(f"DDS type {dds_name!r} is not a ROS 2 type (pkg::msg::dds_::Type_)")
    return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"


def _field_type(desc: tuple[Any, Any], owner: str) -> Any:
    node, arg = desc
    if node == Nodetype.BASE:
        base, bound = arg
        if base == "string":
            return t.bounded_str[bound] if bound else str  # type: ignore[misc]
        if base not in _BASE:
            raise MessageError(f"{owner}: field type {base!r} has no cyclonedds mapping")
        return _BASE[base]
    if node == Nodetype.NAME:
        return idl_type(arg)
    if node == Nodetype.ARRAY:
        sub, length = arg
        return t.array[_field_type(sub, owner), length]  # type: ignore[misc]
    if node == Nodetype.SEQUENCE:
        sub, bound = arg
        inner = _field_type(sub, owner)
        return t.sequence[inner, bound] if bound else t.sequence[inner]  # type: ignore[misc]
    raise MessageError(f"{owner}: unsupported field node {node!r}")


def _annotations(name: str) -> dict[str, Any]:
    _consts, fields = TYPESTORE.fielddefs[name]
    annotations: dict[str, Any] = {}
    for field_name, desc in fields:
        if keyword.iskeyword(field_name):
            raise MessageError(f"{name}.{field_name}: a Python keyword cannot be an IdlStruct field")
        annotations[field_name] = _field_type(desc, name)
    return annotations


@cache
def idl_type(type_name: str) -> type[IdlStruct]:
    """The cyclonedds IdlStruct dataclass for a ROS message type (built once, then cached)."""
    name = ros_type_name(type_name)
    return make_idl_struct(name.replace("/", "_"), dds_type_name(name), _annotations(name))


def to_idl(msg: Any) -> IdlStruct:
    """Convert a rosbags message to the matching IdlStruct instance (tests and debugging only)."""
    cls: Any = idl_type(msg.__msgtype__)
    values = {}
    for field_name in cls.__dataclass_fields__:
        values[field_name] = _to_idl_value(getattr(msg, field_name))
    return cls(**values)


def _to_idl_value(value: Any) -> Any:
    if hasattr(value, "__msgtype__"):
        return to_idl(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_idl_value(v) for v in value]
    return value


def _wire_init(self: Any, payload: bytes) -> None:
    self.payload = payload


def _wire_serialize(self: Any, buffer: Any = None, endianness: Any = None, use_version_2: Any = None) -> bytes:
    return self.payload


def _wire_deserialize(cls: type, data: bytes, has_header: bool = True, use_version_2: Any = None) -> Any:
    # An instance, not bare bytes: cyclonedds attaches `sample_info` to what this returns.
    return cls(bytes(data))


def _wire_deserialize_key(cls: type, data: bytes, has_header: bool = True, use_version_2: Any = None) -> None:
    # ROS types are keyless: a key-only sample (dispose/unregister) carries nothing to decode.
    return None


@cache
def wire_type(type_name: str) -> type[IdlStruct]:
    """IdlStruct with the real type's name and layout whose samples are rosbags CDR bytes.

    cyclonedds writes `sample.serialize()` and reads through `data_type.deserialize(bytes)` and
    `deserialize_key` (the last for dispose/unregister notifications), all public API; replacing
    them puts rosbags in charge of the payload while cyclonedds keeps the type information.
    The class is built beside `idl_type`, not derived from it: a subclass would be announced
    in XTypes discovery as a derived struct, which is a different type.
    """
    name = ros_type_name(type_name)
    cls = make_idl_struct(
        f"Wire_{name.replace('/', '_')}", dds_type_name(name), _annotations(name), dataclassify=False
    )
    cls.__init__ = _wire_init  # type: ignore[method-assign, assignment]
    cls.serialize = _wire_serialize  # type: ignore[method-assign]
    cls.deserialize = classmethod(_wire_deserialize)  # type: ignore[method-assign, assignment]
    cls.deserialize_key = classmethod(_wire_deserialize_key)  # type: ignore[method-assign, assignment]
    return cls


def dds_topic_name(topic: str) -> str:
    """ROS topic name -> DDS topic name: `/joint_states` and `joint_states` -> `rt/joint_states`.

    Relative names resolve against the root namespace (the bridge's nodes live there);
    private `~` names need a node namespace and are rejected.
    """
    name = topic.strip()
    body = name[1:] if name.startswith("/") else name
    tokens = body.split("/")
    ok = bool(body) and all(
        tok and not tok[0].isdigit() and all(c.isalnum() or c == "_" for c in tok) and tok.isascii()
        for tok in tokens
    )
    if not ok:
        raise MessageError(
            f"topic {topic!r}: expected a ROS name like '/joint_states' (letters, digits, '_', "
            "'/'-separated tokens not starting with a digit; no '~', '//' or trailing '/')"
        )
    return "rt/" + body
