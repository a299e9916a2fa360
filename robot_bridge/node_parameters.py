"""The nodes' parameters as declared ROS 2 parameters: `ros2 param list/get/set`.

Every node declares its parameter dataclass's fields (`declare_read_only`: the simulated arm
and the ArUco node, whose parameters are read-only while they run). The policy node does more:

Under the rclpy transport every field of `PolicyNodeParams` is declared on the node with its
value, and the safety filter's effective limits as `safety.<field>` (what the filter enforces,
whatever the params file said), so the parameter services (rcl_interfaces ListParameters,
GetParameters, DescribeParameters, SetParameters) show what the node runs with.

Sets are checked before rclpy stores them:
- live: `safety.*` limits, only tightened (a looser value is refused with the fields it
  loosens); `max_input_age_s`, only lowered; `goal_pos`, when the goal is that parameter;
- everything else is read-only while the node runs (checkpoint, arm, topics, transport, ...):
  the services refuse it, the reason naming the parameter.

The dds transport has no parameter services: a node on it reads its params file and `-p`
overrides once, at start (robot_bridge.ros_params).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np

from robot_bridge.policy_node import PolicyNodeCore
from robot_bridge.policy_params import PolicyNodeParams
from robot_bridge.safety_limits import SafetyConfigError

SAFETY_FIELDS = ("lower", "upper", "velocity", "max_step", "max_tracking_error", "workspace_lo", "workspace_hi",
                 "watchdog_periods")
SAFETY_HELP = {"lower": "lowest target per joint", "upper": "highest target per joint",
               "velocity": "velocity limit per joint (per s)", "max_step": "largest target change per tick, per joint",
               "max_tracking_error": "largest target distance from the measured position, per joint",
               "workspace_lo": "TCP box corner (m, base frame)", "workspace_hi": "TCP box corner (m, base frame)",
               "watchdog_periods": "control periods without a fresh joint state before holding"}
LIVE = {"max_input_age_s": "only lowered while running", "goal_pos": "the fixed goal (task frame of goal_frame)"}


@dataclasses.dataclass(frozen=True)
class Declared:
    """One declared parameter: its value, element type for arrays ("double", "string", "integer",
    "bool"; "" for scalars), whether it can change while running, and a description."""

    value: Any
    array_of: str
    read_only: bool
    description: str


def _array_type(hint: Any) -> str:
    (inner,) = typing.get_args(hint) or (float,)
    return {float: "double", int: "integer", str: "string", bool: "bool"}.get(inner, "double")


def fields_of(params: Any, live: dict[str, str] | None = None) -> dict[str, Declared]:
    """Name -> Declared for the fields of a node's parameter dataclass; those in `live` (name ->
    what a change does) are settable, the rest read-only. Mappings are left out (a node shows
    what they configure its own way), as are values a ROS parameter cannot hold (None)."""
    live = live or {}
    hints = typing.get_type_hints(type(params))
    out: dict[str, Declared] = {}
    for f in dataclasses.fields(params):
        hint, value = hints[f.name], getattr(params, f.name)
        if typing.get_origin(hint) is dict or hint is dict or value is None:
            continue
        array = _array_type(hint) if typing.get_origin(hint) in (list, tuple) else ""
        note = live.get(f.name, "read-only while the node runs: restart it to change")
        out[f.name] = Declared(list(value) if array else value, array, f.name not in live, f"{f.name} ({note})")
    return out


def declared(params: PolicyNodeParams, core: PolicyNodeCore) -> dict[str, Declared]:
    """Name -> Declared for every parameter the policy node shows (sorted as `ros2 param list` shows
    them). safety: the effective limits below; planner_fields: folded into the planner."""
    live = {k: v for k, v in LIVE.items() if k != "goal_pos" or not params.goal_topic}
    out = fields_of(params, live)
    limits = core.limits
    for name in SAFETY_FIELDS:
        value = getattr(limits, name)
        array = "" if name == "watchdog_periods" else "double"
        out[f"safety.{name}"] = Declared([float(v) for v in value] if array else int(value), array, False,
                                         f"safety filter: {SAFETY_HELP[name]}; only tightened while running")
    out["safety.joint_names"] = Declared(list(limits.joint_names), "string", True, "joints the safety filter checks")
    return dict(sorted(out.items()))


def refusal(core: PolicyNodeCore, params: PolicyNodeParams, name: str, value: Any) -> str | None:
    """Why setting `name` to `value` is refused, or None when it may be applied."""
    shown = declared(params, core)
    if name not in shown:
        return f"{name}: not a parameter of this node"
    if shown[name].read_only:
        return f"{name}: read-only while the node runs (restart it with the new value)"
    if name.startswith("safety."):
        try:
            candidate = _limits_with(core, name.split(".", 1)[1], value)
        except (ValueError, TypeError) as exc:
            return f"{name}: {exc}"
        looser = core.limits.loosened(candidate)
        if looser:
            return f"{name}: would loosen the safety limits ({', '.join(looser)}); they may only be tightened"
        try:
            candidate.validate(core.model)
        except SafetyConfigError as exc:
            return f"{name}: {exc}"
        return None
    if name == "max_input_age_s":
        if not isinstance(value, (int, float)) or not 0 < float(value) <= core.obs.max_input_age_s:
            return (f"max_input_age_s: {value!r} would loosen the staleness guard; expected > 0 and <= "
                    f"{core.obs.max_input_age_s:g} s")
        return None
    if name == "goal_pos":
        if len(value) != 3 or not all(np.isfinite(np.asarray(value, dtype=float))):
            return f"goal_pos: expected 3 finite numbers, got {list(value)}"
        return None
    return f"{name}: cannot be set while running"


def apply(core: PolicyNodeCore, params: PolicyNodeParams, name: str, value: Any) -> None:
    """Apply an accepted set (see `refusal`)."""
    if name.startswith("safety."):
        limits = _limits_with(core, name.split(".", 1)[1], value)
        core.limits = limits
        core.safety.tighten(limits)
    elif name == "max_input_age_s":
        core.obs.max_input_age_s = float(value)
        params.max_input_age_s = float(value)
    elif name == "goal_pos":
        params.goal_pos = [float(v) for v in value]
        core.obs.set_goal(params.goal_pos, params.goal_frame or core.obs.frames.base_frame, 0.0)


def _limits_with(core: PolicyNodeCore, field: str, value: Any) -> Any:
    if field == "watchdog_periods":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return dataclasses.replace(core.limits, watchdog_periods=int(value))
    values = tuple(float(v) for v in value)
    return dataclasses.replace(core.limits, **{field: values})


def _declare(node: Any, shown: dict[str, Declared]) -> None:
    from rcl_interfaces.msg import ParameterDescriptor, ParameterType

    types = {"double": ParameterType.PARAMETER_DOUBLE_ARRAY, "integer": ParameterType.PARAMETER_INTEGER_ARRAY,
             "string": ParameterType.PARAMETER_STRING_ARRAY, "bool": ParameterType.PARAMETER_BOOL_ARRAY}
    for name, d in shown.items():
        descriptor = ParameterDescriptor(description=d.description, read_only=d.read_only)
        if d.array_of:
            descriptor.type = types[d.array_of]  # an empty list says nothing of its type
        node.declare_parameter(name, d.value, descriptor)


def declare_read_only(node: Any, params: Any) -> None:
    """Declare a node's parameter dataclass on the rclpy `node`, every field read-only."""
    _declare(node, fields_of(params))


def declare_on(node: Any, params: PolicyNodeParams, core: PolicyNodeCore) -> None:
    """Declare the policy node's parameters on the rclpy `node` and check each set against `refusal`."""
    from rcl_interfaces.msg import SetParametersResult

    _declare(node, declared(params, core))

    def on_set(changes: list[Any]) -> Any:
        # rclpy hands arrays over as numpy arrays or array.array; the checks read lists.
        values = [(c.name, c.value.tolist() if hasattr(c.value, "tolist") else c.value) for c in changes]
        for name, value in values:
            reason = refusal(core, params, name, value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        for name, value in values:
            apply(core, params, name, value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
