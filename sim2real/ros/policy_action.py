"""The policy node's decided action (`~/action`) as a labelled std_msgs/Float64MultiArray:
`policy_action` builds one, `parse_policy_action` reads it back (sim2real.data.decisions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real.ros.messages import FLOAT64_MULTI_ARRAY, TYPESTORE, MessageError, _f64

_T = TYPESTORE.types

# The policy node's decided action (`~/action`): one Float64MultiArray per control tick whose
# labelled layout says what the data holds, so `ros2 topic echo` shows it and a reader checks it.
# Stamps are (sec, nanosec) as exact integers: a float of epoch seconds would round them by
# ~0.2 us and a reader could then pick the joint state before the one the node used.
POLICY_ACTION_LAYOUT = ("action", "safety_changed", "observation_stamp", "policy_step")
INPUT_STAMP_PREFIX = "stamp:"  # then one dim per other input the observation used: "stamp:obj_pose", ...


@dataclass(frozen=True)
class PolicyAction:
    """What a `policy_action` message says: the action, whether the safety filter changed the
    command made from it, the stamp (ns) of the joint state it was computed from, and how many
    decisions the policy had made since its last reset (0: the first of an episode), and the
    stamp (ns) of every other input the observation used, by feature (obj_pose, goal_pos, rgb)."""

    action: np.ndarray
    safety_changed: bool
    observation_stamp_ns: int
    policy_step: int
    input_stamps_ns: dict[str, int]


def _sec_nanosec(ns: int) -> list[float]:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return [float(sec), float(nanosec)]


def _ns(sec: float, nanosec: float, what: str) -> int:
    if sec < 0 or not 0 <= nanosec < 1e9 or sec != int(sec) or nanosec != int(nanosec):
        raise MessageError(f"policy action: {what} ({sec}, {nanosec}) is not (sec, nanosec)")
    return int(sec) * 1_000_000_000 + int(nanosec)


def policy_action(action: Sequence[float] | np.ndarray, safety_changed: bool, observation_stamp_ns: int,
                  policy_step: int, input_stamps_ns: dict[str, int] | None = None) -> Any:
    """std_msgs/Float64MultiArray of the action a policy decided, before the safety filter.

    data = [action (A values), 1.0 if the safety filter changed or held the command else 0.0,
    sec, nanosec of the stamp of the joint state the action was computed from, decisions since
    the policy's last reset, then sec, nanosec per other input]; layout.dim labels the parts
    ("action" A, "safety_changed" 1, "observation_stamp" 2, "policy_step" 1, "stamp:<feature>" 2).
    """
    values = _f64(action, "policy action")
    stamps = dict(sorted((input_stamps_ns or {}).items()))
    labels = [*POLICY_ACTION_LAYOUT, *(INPUT_STAMP_PREFIX + name for name in stamps)]
    sizes = [values.size, 1, 2, 1, *(2 for _ in stamps)]
    dims = [_T["std_msgs/msg/MultiArrayDimension"](label=label, size=size, stride=size)
            for label, size in zip(labels, sizes)]
    layout = _T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0)
    data = np.concatenate([values, [1.0 if safety_changed else 0.0], _sec_nanosec(observation_stamp_ns),
                           [float(policy_step)], *(_sec_nanosec(ns) for ns in stamps.values())])
    return _T[FLOAT64_MULTI_ARRAY](layout=layout, data=data)


def parse_policy_action(msg: Any) -> PolicyAction:
    """The content of a `policy_action` message.

    Raises:
        MessageError: the layout is not the policy action's, or the data does not fit it.
    """
    labels = [(d.label, int(d.size)) for d in msg.layout.dim]
    head, inputs = labels[:len(POLICY_ACTION_LAYOUT)], labels[len(POLICY_ACTION_LAYOUT):]
    if [label for label, _ in head] != list(POLICY_ACTION_LAYOUT) or [n for _, n in head[1:]] != [1, 2, 1] or \
            any(not label.startswith(INPUT_STAMP_PREFIX) or n != 2 for label, n in inputs):
        raise MessageError(f"Float64MultiArray layout {labels}: expected dims labelled {list(POLICY_ACTION_LAYOUT)} "
                           f"with sizes (A, 1, 2, 1), then '{INPUT_STAMP_PREFIX}<feature>' of size 2 "
                           f"(sim2real.ros.messages.policy_action)")
    data = np.asarray(msg.data, dtype=np.float64)
    size = head[0][1]
    if data.size != size + 4 + 2 * len(inputs):
        raise MessageError(f"policy action: {data.size} values for a layout of {sum(n for _, n in labels)}")
    if not np.all(np.isfinite(data)):
        raise MessageError(f"policy action has NaN/inf: {data.tolist()}")
    stamp, step = _ns(data[size + 1], data[size + 2], "observation stamp"), data[size + 3]
    if step < 0 or step != int(step):
        raise MessageError(f"policy action: policy_step {step} is not a count")
    at = size + 4
    stamps = {}
    for k, (label, _) in enumerate(inputs):
        stamps[label[len(INPUT_STAMP_PREFIX):]] = _ns(data[at + 2 * k], data[at + 2 * k + 1], label)
    return PolicyAction(data[:size].copy(), bool(data[size] > 0.5), stamp, int(step), stamps)
