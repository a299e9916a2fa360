"""The policy node's ROS parameters: `PolicyNodeParams` and `policy_node_params` (from --ros-args)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from robot_bridge.ros_params import RosArgs, parse_ros_args, to_params
from sim2real.robot.description import COMMAND_INTERFACES, arm_command_interface
from sim2real.ros.frames import base_in_task_matrix

NODE_NAME = "sim2real_policy_node"


@dataclass
class PolicyNodeParams:
    """ROS parameters of the policy node. Topic names may be private (`~/...`); "" disables an input.

    `policy: reach` replaces the checkpoint by a scripted end-effector reach to `reach_target`
    (task frame), a bring-up check of the whole loop that needs no trained model. `policy: expert`
    runs the scripted expert of `expert_task` (robot_bridge.policies.ExpertPolicy), e.g. to record
    demonstrations on the arm. `latency_log`: a JSON file written at exit with every tick's
    loop and compute milliseconds (robot_bridge.policy_loop.write_latency_log).
    """

    arm: str = "panda"  # the robot's description (configs/arm/<arm>.yaml); the checkpoint's must match
    checkpoint: str = ""
    policy: str = "checkpoint"  # checkpoint | reach | expert
    expert_task: str = "push_cube"  # policy: expert
    expert_noise_std: float = 0.0  # policy: expert
    reach_target: list[float] = field(default_factory=list)
    planner: str = "deploy"  # a preset of configs/planner/
    planner_fields: dict[str, Any] = field(default_factory=dict)  # planner.<PlannerConfig field> overrides
    device: str = "cpu"
    torch_threads: int = 1
    transport: str = "auto"
    domain_id: int = -1  # -1: ROS_DOMAIN_ID from the environment
    allow_network: bool = False
    joint_states_topic: str = "joint_states"
    object_pose_topic: str = "object_pose"
    goal_topic: str = "goal"
    goal_type: str = "point"  # point (PointStamped) | pose (PoseStamped)
    goal_pos: list[float] = field(default_factory=list)  # used when goal_topic is ""
    goal_frame: str = ""  # goal_pos's frame; "": the base frame
    camera_topic: str = ""
    camera_type: str = "compressed"  # compressed | raw
    camera_crop: list[int] = field(default_factory=list)  # x, y, width, height
    estop_topic: str = "estop"
    diagnostics_topic: str = "/diagnostics"  # diagnostic_msgs/DiagnosticArray beside ~/status; "": off
    action_topic: str = "~/action"  # the decided action before the safety filter; "": not published
    episode_topic: str = ""  # std_msgs/Int32: a new value resets the policy (e.g. /sim2real_sim_robot/episode)
    controller: str = "arm_controller"
    command_interface: str = ""  # trajectory | forward | action; "": the arm's control.command_interface
    controller_joints: list[str] = field(default_factory=list)  # default: the arm's joints, then its gripper's
    trajectory_time_s: float = 0.0  # time_from_start of the commanded point; 0: one control period
    base_frame: str = ""  # "": the arm description's base_link
    task_frame: str = "table"
    # The base's pose in the task frame, [x, y, z] or [x, y, z, qx, qy, qz, qw]: used when tf
    # does not connect base_frame and task_frame. []: where the simulated tasks stand the arm's
    # base (tasks.layout.ARM_SETUPS; the Panda's at [-0.615, 0, 0]).
    base_in_task: list[float] = field(default_factory=list)
    tf_topic: str = "/tf"  # tf2_msgs/TFMessage: moving frames; "": not followed
    tf_static_topic: str = "/tf_static"  # fixed frames (transient local, as tf2 publishes them); "": not followed
    max_input_age_s: float = 0.5
    ignore_unknown_joints: bool = False
    hold_orientation: str = "episode_start"  # episode_start | current
    startup_timeout_s: float = 10.0
    joint_state_wait_s: float = 0.02  # at a tick, wait this long for a fresh joint state
    status_period_s: float = 1.0
    max_ticks: int = 0  # stop after this many ticks; 0: until stopped
    duration_s: float = 0.0  # stop after this long; 0: until stopped
    urdf: str = ""  # default: the URDF the arm's description names (configs/arm/<arm>.yaml)
    safety: dict[str, Any] = field(default_factory=dict)  # safety.<SafetyLimits field or builder arg>
    latency_log: str = ""  # write {"loop_ms", "compute_ms", "overruns", "ticks"} here at exit; "": none

    def __post_init__(self) -> None:
        if not self.command_interface:
            self.command_interface = arm_command_interface(self.arm)
        choices = {"policy": ("checkpoint", "reach", "expert"), "command_interface": COMMAND_INTERFACES,
                   "goal_type": ("point", "pose"), "camera_type": ("compressed", "raw"),
                   "hold_orientation": ("episode_start", "current")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"parameter {name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.policy == "checkpoint" and not self.checkpoint:
            raise ValueError("parameter checkpoint: required (a .pt file from pretrain or finetune), or set "
                             "policy:=reach for the scripted reach check")
        if self.policy == "reach" and len(self.reach_target) != 3:
            raise ValueError(f"parameter reach_target: expected 3 numbers (task frame, m), got {self.reach_target}")
        if self.base_in_task:
            base_in_task_matrix(self.base_in_task, "parameter base_in_task")
        if len(self.camera_crop) not in (0, 4):
            raise ValueError(f"parameter camera_crop: expected [] or [x, y, width, height], got {self.camera_crop}")


def policy_node_params(argv: Sequence[str]) -> tuple[PolicyNodeParams, RosArgs]:
    ros = parse_ros_args(argv, NODE_NAME)
    return to_params(PolicyNodeParams, ros, {"safety": "safety", "planner": "planner_fields"}), ros
