"""ROS 2 node conventions of the bridge's nodes: namespaces (`-r __ns:=/left`) and name resolution
as rcl does it, two arms with their own nodes side by side in one ROS graph, declared parameters
(tighten-only sets) through the real parameter services of rclpy, and /diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bridge_netns import Proc, run_in_netns
from test_bridge_loop import node
from test_rclpy_interop import rclpy_python  # noqa: F401  (the session fixture that builds the rclpy venv)

from robot_bridge.ros_params import ParamError, parse_ros_args

TARGETS = {"left": [0.1, 0.1, 0.08], "right": [-0.05, -0.1, 0.12]}


def test_names_resolve_under_the_namespace_as_rcl_resolves_them() -> None:
    ros = parse_ros_args(["--ros-args", "-r", "__ns:=/left", "-r", "__node:=policy",
                          "-r", "camera/image:=/shared/camera"], "sim2real_policy_node")
    assert (ros.node_name, ros.namespace) == ("policy", "/left")
    assert ros.topic("joint_states") == "/left/joint_states"
    assert ros.topic("arm_controller/joint_trajectory") == "/left/arm_controller/joint_trajectory"
    assert ros.topic("~/status") == "/left/policy/status"
    assert ros.topic("/tf") == "/tf" and ros.topic("/diagnostics") == "/diagnostics"
    assert ros.topic("camera/image") == "/shared/camera"  # a remap of the relative name
    assert ros.topic("") == ""
    plain = parse_ros_args([], "sim2real_policy_node")
    assert plain.namespace == "/" and plain.topic("joint_states") == "/joint_states"
    assert plain.topic("~/status") == "/sim2real_policy_node/status"
    with pytest.raises(ParamError, match="__ns:=left: expected an absolute namespace"):
        parse_ros_args(["--ros-args", "-r", "__ns:=left"], "n")


def test_two_arms_in_namespaces_each_driven_by_their_own_node() -> None:
    """Two simulated arms and two policy nodes in one ROS graph, /left and /right, every node with
    default topic names: each arm reaches its own node's target, so no command crossed over."""
    procs = []
    for side, target in TARGETS.items():
        ns = ["-r", f"__ns:=/{side}"]
        procs.append(Proc(f"sim_{side}", node("robot_bridge.sim_robot", [
            "--ros-args", *ns, "-p", "task:=push_cube", "-p", "transport:=dds", "-p", "duration_s:=60.0"]),
            background=True))
        procs.append(Proc(f"policy_{side}", node("robot_bridge.policy_loop", [
            "--ros-args", *ns, "-p", "policy:=reach", "-p", f"reach_target:={target}", "-p", "transport:=dds",
            "-p", "object_pose_topic:=''", "-p", "goal_topic:=''", "-p", "duration_s:=5.0",
            "-p", "startup_timeout_s:=40.0"])))
    res = run_in_netns(procs, domain_id=57, timeout_s=90)
    for side, target in TARGETS.items():
        policy = res[f"policy_{side}"].check().json()
        sim = res[f"sim_{side}"].json()
        assert policy["policy_steps"] >= 40, policy
        # Each arm heard exactly its own node: its command count is at most what that node sent.
        assert 40 <= sim["commands"] <= policy["safety"]["commands"] and sim["rejected"] == 0, (sim, policy)
        error = np.linalg.norm(np.array(sim["tcp_pose"][:3]) - target)
        assert error < 0.01, (side, sim["tcp_pose"], target)


# --- declared parameters --------------------------------------------------------------------------

def reach_core(**params: Any) -> Any:
    from robot_bridge.policies import ReachPolicy
    from robot_bridge.policy_node import PolicyNodeCore, PolicyNodeParams

    p = PolicyNodeParams(policy="reach", reach_target=[0.0, 0.0, 0.1], object_pose_topic="", goal_topic="", **params)
    return PolicyNodeCore(ReachPolicy([0.0, 0.0, 0.1]), p), p


def test_parameter_sets_only_tighten_the_safety_limits() -> None:
    from robot_bridge.node_parameters import apply, declared, refusal

    core, params = reach_core()
    shown = declared(params, core)
    assert shown["checkpoint"].read_only and shown["arm"].value == "panda" and shown["transport"].read_only
    assert not shown["safety.max_step"].read_only and shown["safety.max_step"].array_of == "double"
    assert shown["safety.max_step"].value == list(core.limits.max_step)
    assert shown["reach_target"].value == [0.0, 0.0, 0.1] and shown["controller_joints"].array_of == "string"
    assert "read-only" in refusal(core, params, "checkpoint", "/other.pt")
    step = np.array(core.limits.max_step)
    assert "would loosen the safety limits (max_step)" in refusal(core, params, "safety.max_step", list(step * 2))
    lo = np.array(core.limits.workspace_lo)
    assert "workspace_lo" in refusal(core, params, "safety.workspace_lo", list(lo - 0.1))
    assert refusal(core, params, "safety.max_step", list(step[:3])) is not None  # wrong length
    assert refusal(core, params, "safety.max_step", list(step * 0.5)) is None
    apply(core, params, "safety.max_step", list(step * 0.5))
    np.testing.assert_allclose(core.limits.max_step, step * 0.5)
    np.testing.assert_allclose(core.safety.limits.max_step, step * 0.5)
    # ... and it stays tightened across an episode reset (the filter is rebuilt from core.limits).
    core.reset_episode()
    np.testing.assert_allclose(core.safety.limits.max_step, step * 0.5)
    assert "staleness" in refusal(core, params, "max_input_age_s", 2.0)
    assert refusal(core, params, "max_input_age_s", 0.2) is None
    apply(core, params, "max_input_age_s", 0.2)
    assert core.obs.max_input_age_s == 0.2
    assert refusal(core, params, "safety.watchdog_periods", 1) is None
    assert "not a parameter" in refusal(core, params, "no_such_parameter", 1)


def test_the_sim_arm_and_aruco_nodes_show_their_parameters_read_only() -> None:
    from robot_bridge.aruco_core import ArucoNodeParams
    from robot_bridge.node_parameters import fields_of
    from robot_bridge.sim_robot_core import SimRobotParams

    sim = fields_of(SimRobotParams())
    assert sim["task"].value == "push_cube" and sim["task"].read_only and "domain_fields" not in sim
    assert sim["controller_joints"].array_of == "string"
    aruco = fields_of(ArucoNodeParams())
    assert aruco["marker_ids"].value == [0] and aruco["marker_ids"].array_of == "integer"
    assert all(d.read_only for d in aruco.values())


PARAM_CLIENT = """
import json, time
import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from diagnostic_msgs.msg import DiagnosticArray

rclpy.init()
node = rclpy.create_node("param_client")
diagnostics = []
node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
NODE = "/sim2real_policy_node"

def call(kind, service, request):
    client = node.create_client(kind, f"{NODE}/{service}")
    assert client.wait_for_service(timeout_sec=60), service
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=20)
    return future.result()

def set_one(name, value):
    if isinstance(value, list):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    else:
        v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    result = call(SetParameters, "set_parameters", SetParameters.Request(parameters=[Parameter(name=name, value=v)]))
    return [result.results[0].successful, result.results[0].reason]

out = {"names": list(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)}
got = call(GetParameters, "get_parameters", GetParameters.Request(names=["safety.max_step", "arm", "transport"]))
step = list(got.values[0].double_array_value)
out["get"] = [step, got.values[1].string_value, got.values[2].string_value]
out["tighter"] = set_one("safety.max_step", [v * 0.5 for v in step])
out["looser"] = set_one("safety.max_step", [v * 4 for v in step])
out["read_only"] = set_one("checkpoint", "/tmp/other.pt")
out["after"] = list(call(GetParameters, "get_parameters",
                         GetParameters.Request(names=["safety.max_step"])).values[0].double_array_value)
NODE = "/sim2real_sim_robot"
out["sim_names"] = list(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
out["sim_set"] = set_one("task", "pick_cube")
deadline = time.monotonic() + 15
while time.monotonic() < deadline and not any(s.status[0].values for s in diagnostics[-1:]
                                               if s.status and "running" in s.status[0].message):
    rclpy.spin_once(node, timeout_sec=0.1)
last = diagnostics[-1].status[0] if diagnostics else None
out["diagnostics"] = None if last is None else {"name": last.name, "level": int.from_bytes(last.level, "little")
                                                if isinstance(last.level, bytes) else int(last.level),
                                                "message": last.message, "hardware_id": last.hardware_id,
                                                "values": {kv.key: kv.value for kv in last.values}}
print(json.dumps(out))
"""


def test_parameter_services_and_diagnostics_under_real_rclpy(rclpy_python: str) -> None:  # noqa: F811
    """The policy node and the simulated arm on the rclpy transport (the test venv's real rclpy):
    the policy node's parameters listed, read and set through the ROS 2 parameter services, an unsafe set
    and a read-only one refused, and its health on /diagnostics."""
    policy = node("robot_bridge.policy_loop", [
        "--ros-args", "-p", "policy:=reach", "-p", "reach_target:=[0.1, 0.1, 0.08]", "-p", "transport:=rclpy",
        "-p", "object_pose_topic:=''", "-p", "goal_topic:=''", "-p", "duration_s:=25.0",
        "-p", "startup_timeout_s:=60.0", "-p", "status_period_s:=0.5"], foreign_python=True)
    sim = node("robot_bridge.sim_robot", ["--ros-args", "-p", "task:=push_cube", "-p", "transport:=rclpy",
                                          "-p", "duration_s:=60.0"], foreign_python=True)
    res = run_in_netns([Proc("client", PARAM_CLIENT, rclpy_python), Proc("policy", policy, rclpy_python,
                                                                        background=True),
                        Proc("sim", sim, rclpy_python, background=True)], domain_id=58, timeout_s=90)
    out = res["client"].check().json()
    assert {"checkpoint", "arm", "transport", "safety.max_step", "safety.workspace_lo", "max_input_age_s",
            "joint_states_topic"} <= set(out["names"]), out["names"]
    step, arm, transport = out["get"]
    assert len(step) == 9 and arm == "panda" and transport == "rclpy"
    assert out["tighter"] == [True, ""]
    ok, reason = out["looser"]
    assert not ok and "would loosen the safety limits (max_step)" in reason, reason
    ok, reason = out["read_only"]
    assert not ok and "checkpoint" in reason, reason
    np.testing.assert_allclose(out["after"], np.array(step) * 0.5)
    # The simulated arm (on rclpy too) shows its parameters, read-only.
    assert {"task", "arm", "joint_state_rate_hz", "controller_joints"} <= set(out["sim_names"]), out["sim_names"]
    ok, reason = out["sim_set"]
    assert not ok and "task" in reason, reason
    diag = out["diagnostics"]
    assert diag is not None, res["policy"].describe()
    assert diag["name"] == "/sim2real_policy_node: policy loop" and diag["hardware_id"] == "panda"
    assert diag["level"] in (0, 1) and diag["values"]["state"] == "running", diag
    assert {"achieved_hz", "overruns", "watchdog_trips", "estop", "safety.clamped", "safety.held"} <= set(diag["values"])


def test_diagnostic_levels_follow_the_node_state() -> None:
    from robot_bridge.diagnostics import ERROR, OK, WARN, policy_diagnostics, policy_level
    from sim2real.ros import messages as m

    running = {"state": "running", "ticks": 100, "achieved_hz": 19.8, "control_hz": 20.0, "overruns": 0,
               "estop": False, "safety": {"commands": 99, "clamped": 3, "rejected": 0, "held": 0}}
    assert policy_level(running) == (OK, "running at 19.8 Hz")
    assert policy_level({**running, "estop": True, "state": "estop"})[0] == ERROR
    assert policy_level({**running, "state": "watchdog"})[0] == ERROR
    level, message = policy_level({**running, "achieved_hz": 12.0, "overruns": 4})
    assert level == WARN and "12.0 Hz of 20 Hz" in message and "4 overruns" in message
    assert policy_level({**running, "safety": {"held": 2}})[0] == WARN
    msg = m.deserialize(m.serialize(policy_diagnostics(running, "/left/policy", "panda", 1.0)),
                        "diagnostic_msgs/msg/DiagnosticArray")
    (status,) = msg.status
    assert status.name == "/left/policy: policy loop" and status.hardware_id == "panda"
    values = {kv.key: kv.value for kv in status.values}
    assert values["achieved_hz"] == "19.8" and values["estop"] == "false" and values["safety.clamped"] == "3"
