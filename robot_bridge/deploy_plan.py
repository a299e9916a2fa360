"""What a deployment starts: the task, episode length and contract its policy runs
(`resolve_policy`), both nodes' ROS parameters (`node_params`) and the topics a recording
needs (`record_topics`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from robot_bridge.deploy_config import DeployConfig
from sim2real.contract import ContractMismatch
from tasks.spec import TaskConfig, arm_shape

SIM_NODE, POLICY_NODE, ARUCO_NODE = "sim2real_sim_robot", "sim2real_policy_node", "sim2real_aruco_node"
PERCEPTIONS = ("", "aruco")
# The simulated arm's ArUco camera topics (perception=aruco, robot=sim).
ARUCO_IMAGE_TOPIC, ARUCO_INFO_TOPIC = "/aruco_camera/image_raw/compressed", "/aruco_camera/camera_info"
# History depth of the recorder's subscriptions: DDS keeps receiving while this process is
# descheduled, and with the ROS profiles' 5-10 samples a 0.3 s stall on a busy 2-core machine
# lost 0.28 s of joint states from a bag. 500 samples hold 5 s of a 100 Hz topic.
RECORD_DEPTH = 500


def is_expert(cfg: DeployConfig) -> bool:
    return cfg.policy.get("policy", "checkpoint") == "expert"


def node_params(cfg: DeployConfig, task: str, episode_length: int, transport: str, rgb: bool) -> dict[str, Any]:
    out = Path(cfg.out_dir).resolve()  # the nodes run from the repository root
    sim = {"task": task, "arm": cfg.arm, "seed": cfg.seed, "domain": cfg.robot.domain,
           "episode_length": episode_length,
           "joint_state_rate_hz": cfg.robot.joint_state_rate_hz, "transport": transport,
           "camera": cfg.robot.camera or rgb, "allow_network": cfg.allow_network, **cfg.robot.params}
    if cfg.video_episodes > 0:
        sim.setdefault("video_dir", str(out / "videos"))
        sim.setdefault("video_episodes", cfg.video_episodes)
    planner = {f"planner.{k}": v for k, v in asdict(cfg.planner).items() if k != "name"}
    if cfg.policy.get("arm", cfg.arm) != cfg.arm:
        raise ValueError(f"policy.arm={cfg.policy['arm']!r} and arm={cfg.arm!r} differ: set arm= only")
    policy = {"arm": cfg.arm, "checkpoint": str(Path(cfg.checkpoint).resolve()) if cfg.checkpoint else "",
              "planner": cfg.planner.name, **planner, "device": cfg.device,
              "transport": transport, "allow_network": cfg.allow_network,
              "startup_timeout_s": cfg.startup_timeout_s, **cfg.policy}
    if is_expert(cfg):
        policy.setdefault("expert_task", task)
    if cfg.latency_log:
        policy.setdefault("latency_log", str(out / "latency.json"))
    if cfg.robot.kind == "sim":
        from tasks.layout import arm_setup

        policy.setdefault("episode_topic", f"/{SIM_NODE}/episode")
        # The scene's workspace for the safety filter (the policy node's default base_in_task is
        # already where the scene stands the arm's base).
        setup = arm_setup(cfg.arm, task)
        if setup.workspace_lo is not None and setup.workspace_hi is not None:
            policy["safety"] = {"workspace_lo": list(setup.workspace_lo), "workspace_hi": list(setup.workspace_hi),
                                **policy.get("safety", {})}
        if rgb:
            policy.setdefault("camera_topic", "/camera/image_raw/compressed")
    nodes = {SIM_NODE: {"ros__parameters": sim}, POLICY_NODE: {"ros__parameters": policy}}
    if cfg.perception == "aruco":
        nodes[ARUCO_NODE] = {"ros__parameters": aruco_params(cfg, task, transport, rgb, sim, policy)}
    return nodes


def aruco_params(cfg: DeployConfig, task: str, transport: str, rgb: bool, sim: dict[str, Any],
                 policy: dict[str, Any]) -> dict[str, Any]:
    """perception=aruco: the ArUco node's parameters, and (robot=sim) the arm's camera in `sim`.

    The node publishes on the policy node's object pose topic in the arm's base frame; with
    robot=sim the arm stops publishing the true pose and publishes its `aruco_camera` (the marker
    on each cube's top face, tasks.mujoco.scene), its CameraInfo and the optical frame on /tf_static.
    """
    from sim2real.robot.description import load_arm

    if rgb:
        raise ValueError("perception=aruco: the simulated arm's camera then shows the ArUco view, not the "
                         "policy's; run a state policy (a state checkpoint or policy.policy=expert)")
    aruco = {"transport": transport, "allow_network": cfg.allow_network,
             "object_pose_topic": policy.get("object_pose_topic", "/object_pose"),
             "output_frame": policy.get("base_frame") or load_arm(cfg.arm).base_link}
    if cfg.robot.kind == "sim":
        from tasks.layout import ARUCO_MARKER_FRACTION, arm_setup

        half = arm_setup(cfg.arm, task).cube_half_size
        sim.update({"camera": True, "camera_name": "aruco_camera", "camera_topic": ARUCO_IMAGE_TOPIC,
                    "camera_format": "jpeg", "camera_rate_hz": 20.0, "camera_info_topic": ARUCO_INFO_TOPIC,
                    "object_pose_topic": "",
                    **cfg.robot.params})
        # The marker's black square and where the cube's centre is below it (the sheet is 0.2 mm
        # thick on the top face); apriltag corners: about 1 mm on this camera (tests/test_sim_aruco.py).
        aruco.update({"image_topic": ARUCO_IMAGE_TOPIC, "camera_info_topic": ARUCO_INFO_TOPIC, "marker_ids": [0],
                      "marker_size": 2 * half * ARUCO_MARKER_FRACTION,
                      "marker_to_object": [0.0, 0.0, -(half + 2e-4)], "corner_refinement": "apriltag"})
    return {**aruco, **cfg.perception_params}


def resolve_task(cfg: DeployConfig) -> tuple[str, int]:
    """The task's name ("" when not set) and its configured episode length (0: not set)."""
    task = cfg.task
    if isinstance(task, str):
        return task, 0
    if isinstance(task, TaskConfig):
        task = asdict(task)
    if isinstance(task, dict):
        # The arm is deploy's arm=; a task.arm other than the default and that one is a conflict.
        if task.get("arm", cfg.arm) not in (cfg.arm, TaskConfig.arm):
            raise ValueError(f"task.arm={task['arm']!r} and arm={cfg.arm!r} differ: set arm= only")
        task = TaskConfig(**{**task, "arm": cfg.arm})
    if not isinstance(task, TaskConfig):
        raise ValueError(f"task={task!r}: expected a task name or the task/ group (TaskConfig)")
    expert_mode = arm_shape(cfg.arm).modes[0]
    if is_expert(cfg) and (task.obs_mode, task.mode) != ("state", expert_mode):
        raise ValueError(f"task.obs_mode={task.obs_mode!r}, task.control_mode={task.mode!r}: the scripted "
                         f"expert observes state and acts in {expert_mode} on arm {cfg.arm!r}")
    return task.name, task.episode_length


def resolve_policy(cfg: DeployConfig) -> tuple[str, int, Any]:
    """(task, episode length, contract) of what the policy node will run."""
    from tasks.spec import episode_length, task_contract

    named, task_length = resolve_task(cfg)
    if is_expert(cfg):
        task = named or str(cfg.policy.get("expert_task", ""))
        if not task:
            raise ValueError("task=...: required with policy.policy=expert (no checkpoint names the task), "
                             "e.g. task=push_cube")
        if cfg.policy.get("expert_task", task) != task:
            raise ValueError(f"policy.expert_task={cfg.policy['expert_task']!r} and task={task!r} differ; set one")
        # Also refuses unknown tasks; the expert acts in the arm's first mode (robot_bridge.policies).
        contract = task_contract(task, "state", arm_shape(cfg.arm).modes[0], arm=cfg.arm)
        return task, cfg.robot.episode_length or task_length or episode_length(task, cfg.arm), contract
    if not cfg.checkpoint:
        raise ValueError("checkpoint=...: required (a .pt file from pretrain or finetune), or run the scripted "
                         "expert with policy.policy=expert task=<task>")
    from sim2real.checkpoint import load_checkpoint

    ckpt = load_checkpoint(cfg.checkpoint)
    if ckpt.contract.arm != cfg.arm:
        raise ContractMismatch(f"{cfg.checkpoint}: contract mismatch: arm {ckpt.contract.arm!r} in checkpoint, "
                               f"{cfg.arm!r} on the robot (arm=)")
    task = str(ckpt.extra.get("task", "push_cube"))
    if named and named != task:
        raise ValueError(f"task={named!r}: the checkpoint {cfg.checkpoint} is for task {task!r}")
    return task, cfg.robot.episode_length or task_length or int(ckpt.extra.get("episode_length", 50)), \
        ckpt.contract


def record_topics(cfg: DeployConfig, rgb: bool) -> list[Any]:
    """The topics a finetuning reader needs (configs/dataset/ros2_sim_panda.yaml), named as the
    policy node's parameters name them: joint states, object pose, goal, camera, commands, and the
    node's decided actions before the safety filter (`action_topic`, which the reader prefers)."""
    from sim2real.ros import messages as m
    from robot_bridge.bag_recorder import TopicSpec
    from sim2real.ros.observation import POINT_STAMPED
    from robot_bridge.policy_node import PolicyNodeParams
    from robot_bridge.transport import QoS

    from robot_bridge.ros_params import RosArgs

    defaults = PolicyNodeParams(policy="reach", reach_target=[0.0, 0.0, 0.0], arm=cfg.arm)
    node = RosArgs(POLICY_NODE)  # deploy starts its nodes without a namespace: names as the node resolves them

    def param(name: str) -> Any:
        value = cfg.policy.get(name, getattr(defaults, name))
        return node.topic(value) if name.endswith("_topic") else value

    interface, controller = param("command_interface"), param("controller")
    if interface == "action":
        raise ValueError("record_dir: command_interface=action sends FollowJointTrajectory goals, which a bag "
                         "recorder cannot hear; record with command_interface trajectory or forward")
    # Best effort where the policy node subscribes best effort (it matches any publisher), reliable elsewhere.
    sensor, default = QoS(reliable=False, depth=RECORD_DEPTH), QoS(reliable=True, depth=RECORD_DEPTH)
    topics = [TopicSpec(param("joint_states_topic"), m.JOINT_STATE, sensor)]
    if param("object_pose_topic"):
        topics.append(TopicSpec(param("object_pose_topic"), m.POSE_STAMPED, sensor))
    if param("goal_topic"):
        topics.append(TopicSpec(param("goal_topic"), POINT_STAMPED if param("goal_type") == "point"
                                else m.POSE_STAMPED, default))
    camera = param("camera_topic") or ("/camera/image_raw/compressed" if rgb and cfg.robot.kind == "sim" else "")
    if camera:
        kind = m.COMPRESSED_IMAGE if param("camera_type") == "compressed" else m.IMAGE
        topics.append(TopicSpec(camera, kind, sensor))
    if interface == "forward":
        topics.append(TopicSpec(node.topic(f"{controller}/commands"), m.FLOAT64_MULTI_ARRAY, default))
    else:
        topics.append(TopicSpec(node.topic(f"{controller}/joint_trajectory"), m.JOINT_TRAJECTORY, default))
    action = param("action_topic")
    if action:
        topics.append(TopicSpec(action, m.FLOAT64_MULTI_ARRAY, default))
    return topics
