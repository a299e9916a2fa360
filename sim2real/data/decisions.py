"""The policy node's decided actions in a bag as the steps of an episode.

When the policy node drives the arm it publishes, every tick, the action it decided before its
safety filter (`~/action`, sim2real.ros.policy_action) with the stamps of the joint
state and of every other input it acted on, and the count of decisions since the policy was
reset. Each such message is one step: its action is what the demonstrator meant, and the
observation is assembled from exactly the messages the node used. Nothing is resampled, so a
recorder that stalled and wrote several messages at once loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim2real.ros import messages as m
from sim2real.ros import policy_action as pa
from sim2real.data.bag_streams import Bag, Segment, message_error
from sim2real.data.episode import DatasetError

# Inputs a decided action names the message of, by the feature it gives -> the reader's role.
STAMPED_INPUTS = {"obj_pose": "object", "goal_pos": "goal", "rgb": "camera"}
# The node keeps input stamps as float seconds: they come back within a microsecond.
STAMP_TOLERANCE_NS = 1_000


@dataclass
class DecidedSteps:
    """An episode's steps from decided actions.

    Attributes:
        obs_t: when to observe the joint state [T+1] (the last: one period after the last step).
        actions: the decided actions [T, A], unclipped.
        safety_changed: whether the filter changed the command made from each [T].
        held_at: per other input's role, when to hold it [T+1] (the message the node used).
    """

    obs_t: np.ndarray
    actions: np.ndarray
    safety_changed: np.ndarray
    held_at: dict[str, np.ndarray]


def decided_steps(bag: Bag, seg: Segment, ready: int, action_dim: int, period: int, roles: dict[str, str], *,
                  header_clock: bool, required: bool) -> DecidedSteps | None:
    """The decided actions of `bag`'s "intent" stream in `seg` as steps, or None where there are none.

    Args:
        ready: the first time every input has a message; decisions on earlier inputs are dropped.
        action_dim / period: the contract's action size and control period (ns).
        roles: the reader's role -> topic (inputs it observes).
        header_clock: times are header stamps (`time_source: header`): observe at the stamps the
            node names; else at each message's receive time.
        required: no decided action in the episode is an error (`actions: intent`).

    Raises:
        DatasetError: a malformed message, stamps going back, or no usable decision (names the
            bag, topic and time).
    """
    stream = bag.streams.get("intent")
    lo = hi = 0
    if stream is not None:
        lo = int(np.searchsorted(stream.times, seg.start, side="left"))
        hi = int(np.searchsorted(stream.times, seg.end, side="right"))
    if lo >= hi:
        if required:
            raise DatasetError(f"{bag.path}: topic {roles.get('intent', '')} (decided actions): no message between "
                               f"{bag.at(seg.start)} and {bag.at(seg.end)} (actions: intent)")
        return None
    assert stream is not None
    inputs = {f: r for f, r in STAMPED_INPUTS.items() if r in roles}
    decided = []
    for i in range(lo, hi):
        try:
            decision = pa.parse_policy_action(stream.msgs[i])
        except m.MessageError as exc:
            raise message_error(bag, stream, i, [str(exc)]) from exc
        if decision.action.size != action_dim:
            raise message_error(bag, stream, i, [f"decided action has {decision.action.size} values, the "
                                                 f"contract {action_dim}"])
        stamp = decision.observation_stamp_ns
        t = stamp if header_clock and stamp > 0 else int(stream.times[i])
        used = [decision.input_stamps_ns.get(f, ready) for f in inputs]
        if t >= ready and min(used, default=ready) + STAMP_TOLERANCE_NS >= ready:
            decided.append((i, t, decision))  # else acted on inputs from before the episode (or the bag)
    # The episode starts with the policy's first decision after its reset, where the bag has it:
    # decisions before it were made before the node heard of the new episode.
    first = next((k for k, (_, _, d) in enumerate(decided) if d.policy_step == 0), 0)
    times: list[int] = []
    actions, changed = [], []
    held: dict[str, list[int]] = {role: [] for role in inputs.values()}
    for i, t, decision in decided[first:]:
        if times and t < times[-1]:
            raise message_error(bag, stream, i, [f"observation stamp {bag.at(t)} is before the previous step's "
                                                 f"{bag.at(times[-1])}"])
        times.append(t)
        actions.append(decision.action)
        changed.append(decision.safety_changed)
        for feature, role in inputs.items():  # the message the node used where it says so, else the hold
            at = decision.input_stamps_ns.get(feature, 0)
            held[role].append(at + STAMP_TOLERANCE_NS if header_clock and at > 0 else t)
    end = min(times[-1] + period, seg.end) if times else seg.end
    if not times or end <= times[-1]:
        raise DatasetError(f"{bag.path}: topic {stream.topic}: no decided action on a complete observation with "
                           f"time left for its outcome between {bag.at(ready)} and {bag.at(seg.end)}")
    return DecidedSteps(np.array([*times, end], dtype=np.int64), np.stack(actions), np.array(changed, dtype=bool),
                        {role: np.array([*at, end], dtype=np.int64) for role, at in held.items()})
