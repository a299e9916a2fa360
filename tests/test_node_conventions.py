"""ROS 2 node conventions of the bridge's nodes: namespaces (`-r __ns:=/left`), name resolution as
rcl does it, and two arms with their own nodes side by side in one ROS graph."""

from __future__ import annotations

import numpy as np
import pytest
from bridge_netns import Proc, run_in_netns
from test_bridge_loop import node

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
