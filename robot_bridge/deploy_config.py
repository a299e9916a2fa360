"""The deployment's settings: `DeployConfig` (configs/deploy.yaml) and its `robot/` group, `RobotConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from sim2real.config import PlannerConfig
from sim2real.robot.description import arm_name
from tasks.spec import TaskConfig  # noqa: F401  (registers the task/ group: `task=push_cube`)


@dataclass
class RobotConfig:
    """The `robot/` group: which arm the policy drives.

    Args:
        kind: "sim" (start the MuJoCo arm node) or "ros" (an arm already serving the ROS 2 interface).
        domain: the simulated arm's world (a configs/domain/ preset; the "real" arm differs from training).
        episode_length: control periods per episode; 0: the checkpoint's (or the task's) length.
        joint_state_rate_hz: the simulated arm's joint state rate.
        camera: publish camera frames (always on when the checkpoint observes rgb).
        params: more sim2real_sim_robot parameters (e.g. {"domain.friction_scale": 0.5}).
        success_topic: robot=ros: std_msgs/Bool read at each episode's end ("" reports success=na).
    """

    kind: str = "sim"
    domain: str = "target"
    episode_length: int = 0
    joint_state_rate_hz: float = 100.0
    camera: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    success_topic: str = ""


@dataclass
class DeployConfig:
    """`configs/deploy.yaml`: `python scripts/deploy.py checkpoint=... robot=sim transport=auto episodes=N`.

    Args:
        checkpoint: a checkpoint from pretrain or finetune; not needed with policy.policy=expert.
        arm: the arm driven (configs/arm/<arm>.yaml), the policy node's `arm`. A checkpoint for
            another arm is refused before any node starts; robot=sim simulates this arm in its task
            scene (tasks.layout.ARM_SETUPS: the Panda, the SO-100 for pick_cube).
        task: the task when no checkpoint names it (policy.policy=expert): a name, or the `task/`
            group (`task=push_cube` on the command line; its episode_length, when set, is used
            unless robot.episode_length is); with a checkpoint it must match the checkpoint's, or be "".
        robot: the `robot/` group.
        transport: auto (rclpy when importable here, else dds), dds or rclpy.
        episodes: episodes to run.
        seed: episode i is reset with seed + i.
        domain_id: ROS_DOMAIN_ID of the nodes.
        allow_network: run on the real network (a LAN arm) instead of a loopback-only namespace.
        planner: the `planner/` group (preset and fields), passed to the policy node.
        policy: more sim2real_policy_node parameters (e.g. {"command_interface": "forward"}).
        startup_timeout_s: how long the nodes may take to load and see each other.
        rclpy_python: the Python that has rclpy, for transport=rclpy ("" finds scripts/rclpy_venv.sh's).
        out_dir: where the params file, node logs, latency.json and videos go.
        record_dir: record every episode as a rosbag2 bag under this directory ("": no recording).
        record_storage: the bags' storage, "mcap" or "sqlite3".
        latency_log: the policy node writes its per-tick loop and compute times to out_dir/latency.json.
        video_episodes: robot=sim: render the first N episodes to out_dir/videos/episode_<k>.mp4 (0: none).
        perception: "" (robot=sim: the arm publishes the object's true pose) or "aruco": the
            object pose comes from `sim2real_aruco_node` reading a camera; with robot=sim the arm
            publishes its ArUco camera, CameraInfo and tf instead of the pose (a state policy only).
        perception_params: more sim2real_aruco_node parameters (robot_bridge/aruco_core.py).
    """

    checkpoint: str = ""
    arm: Any = "panda"  # a name, or the arm/ group's node (arm=so100 on the command line)
    task: Any = ""  # str or TaskConfig
    robot: RobotConfig = field(default_factory=RobotConfig)
    transport: str = "auto"
    episodes: int = 3
    seed: int = 1000
    domain_id: int = 0
    allow_network: bool = False
    planner: PlannerConfig = field(default_factory=lambda: PlannerConfig(name="deploy"))
    device: str = "cpu"
    policy: dict[str, Any] = field(default_factory=dict)
    startup_timeout_s: float = 60.0
    rclpy_python: str = ""
    out_dir: str = "outputs/deploy"
    record_dir: str = ""
    record_storage: str = "mcap"
    latency_log: bool = True
    video_episodes: int = 0
    perception: str = ""
    perception_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.arm = arm_name(self.arm)  # the arm/ group's node -> its name


ConfigStore.instance().store(name="deploy_schema", node=DeployConfig)
ConfigStore.instance().store(group="robot", name="schema", node=RobotConfig)
