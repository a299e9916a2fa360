"""The policy node's status as `diagnostic_msgs/DiagnosticArray` on `/diagnostics`.

ROS tools (rqt_robot_monitor, the diagnostic aggregator, `ros2 topic echo /diagnostics`) read
node health from there, not from a node's own JSON on `~/status`. One `DiagnosticStatus` per
node, named `<namespace>/<node>: policy loop`, hardware_id the arm:

- ERROR: the e-stop is latched, or the watchdog tripped on the last command;
- WARN: no decision yet (waiting for inputs), the loop below 90 % of its control rate, ticks
  overran, or the safety filter rejected or held commands;
- OK otherwise. The message says why; `values` carry the rate, overruns, watchdog, e-stop and
  the safety filter's counts as strings (KeyValue holds strings only).
"""

from __future__ import annotations

from typing import Any

from sim2real.ros import messages as m

DIAGNOSTIC_ARRAY = m.DIAGNOSTIC_ARRAY
DIAGNOSTICS_TOPIC = "/diagnostics"  # absolute, as every ROS node publishes it
OK, WARN, ERROR = 0, 1, 2  # DiagnosticStatus levels (bytes on the wire)
RATE_WARN = 0.9  # achieved / control rate below this warns


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def policy_level(status: dict[str, Any]) -> tuple[int, str]:
    """(level, message) for a policy node status (robot_bridge.policy_node.PolicyNodeCore.status)."""
    safety = status.get("safety") or {}
    if status.get("estop"):
        return ERROR, "e-stop latched: commands held until ~/reset_estop"
    if status.get("state") == "watchdog":
        return ERROR, "watchdog tripped: inputs went stale, the arm is held"
    problems = []
    if status.get("state") == "waiting":
        problems.append("waiting for a complete observation")
    hz, target = float(status.get("achieved_hz") or 0.0), float(status.get("control_hz") or 0.0)
    if status.get("ticks", 0) > 1 and target and hz < RATE_WARN * target:
        problems.append(f"loop at {hz:.1f} Hz of {target:g} Hz")
    if status.get("overruns"):
        problems.append(f"{status['overruns']} overruns")
    if safety.get("rejected") or safety.get("held"):
        problems.append(f"safety filter rejected {safety.get('rejected', 0)} and held {safety.get('held', 0)} commands")
    if problems:
        return WARN, "; ".join(problems)
    return OK, f"running at {hz:.1f} Hz"


def policy_diagnostics(status: dict[str, Any], name: str, hardware_id: str, stamp: float | None = None) -> Any:
    """A DiagnosticArray with one status for the policy node (`name`: its fully qualified name)."""
    types = m.TYPESTORE.types
    level, message = policy_level(status)
    safety = status.get("safety") or {}
    values = {"state": status.get("state"), "control_hz": status.get("control_hz"),
              "achieved_hz": status.get("achieved_hz"), "ticks": status.get("ticks"),
              "policy_steps": status.get("policy_steps"), "overruns": status.get("overruns"),
              "missed_ticks": status.get("missed_ticks"), "estop": status.get("estop"),
              "watchdog_trips": status.get("watchdog_trips"), "loop_p99_ms": status.get("loop_p99_ms"),
              **{f"safety.{k}": v for k, v in safety.items()}}
    key_values = [types["diagnostic_msgs/msg/KeyValue"](key=k, value=_text(v)) for k, v in values.items()]
    entry = types["diagnostic_msgs/msg/DiagnosticStatus"](level=level, name=f"{name}: policy loop", message=message,
                                                          hardware_id=hardware_id, values=key_values)
    return types[DIAGNOSTIC_ARRAY](header=m.header("", stamp), status=[entry])
