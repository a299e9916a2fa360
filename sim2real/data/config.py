"""What a demo source is and how its fields become contract features: the Hydra `dataset/` group.

`DatasetConfig` names the format, the task whose contract the episodes must have, and one
section of options per format. The presets in `configs/dataset/` fill them in for a setup
(`ros2_panda.yaml`: the topics of a Panda under ros2_control, as scripts/record_demos.py
records them; `lerobot_panda.yaml`, `lerobot_so100.yaml`, `maniskill.yaml`, `robomimic_lift.yaml`,
`sim2real.yaml`).

Formats that store arrays (LeRobot columns, ManiSkill and robomimic HDF5 datasets) map them
to features with `Part`s: each feature is the concatenation of its parts, each part a slice
of one stored array (or a constant), optionally scaled and offset. For example robosuite's
end-effector pose, quaternion (x, y, z, w), becomes `tcp_pose` (w, x, y, z) with

    tcp_pose:
      - {key: obs/robot0_eef_pos}
      - {key: obs/robot0_eef_quat, index: [3, 0, 1, 2]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

FORMATS = ("sim2real", "rosbag2", "lerobot", "maniskill", "robomimic")
ACTION_KINDS = ("task", "joint_targets", "next_state")


@dataclass
class Part:
    """One slice of a stored array (or a constant) that goes into a feature or the action.

    Args:
        key: the array: a LeRobot column, or an HDF5 path relative to the episode's group.
        index: elements to take, in this order (reorders too); empty: `start`:`stop`.
        start / stop: the slice taken when `index` is empty (stop None: to the end).
        scale: multiplies the slice.
        offset: added after scaling (one value, or one per element), e.g. a frame origin.
        value: a constant instead of a key (the same every step).
    """

    key: str = ""
    index: list[int] = field(default_factory=list)
    start: int = 0
    stop: Optional[int] = None
    scale: float = 1.0
    offset: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)


def as_parts(parts: Iterable[Part | Mapping[str, Any]], where: str) -> list[Part]:
    """Parts given as Part or as mappings of Part's fields (OmegaConf hands nested lists of a
    dict field back as plain dicts)."""
    names = {f.name for f in fields(Part)}
    out = []
    for part in parts:
        if isinstance(part, Part):
            out.append(part)
            continue
        unknown = sorted(set(part) - names)
        if unknown:
            raise ValueError(f"{where}: a part has unknown fields {unknown} (expected {sorted(names)})")
        out.append(Part(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in part.items()}))
    return out


class _KeyMap:
    """`features` and `action` of a key-mapped format, normalised to Parts."""

    features: dict[str, list[Part]]
    action: list[Part]

    def __post_init__(self) -> None:
        section = type(self).__name__
        self.features = {str(k): as_parts(v, f"{section}.features.{k}") for k, v in self.features.items()}
        self.action = as_parts(self.action, f"{section}.action")


@dataclass
class RosbagOptions:
    """rosbag2 logs (MCAP or sqlite3): which topic gives which feature, and how time is aligned.

    Topic and frame names follow the policy node's parameters (robot_bridge/policy_node.py), so
    the features are assembled exactly as the deployed node assembles them
    (sim2real/ros/observation.py).

    Args:
        joint_states_topic: sensor_msgs/JointState -> qpos, qvel (reordered by joint name) and
            tcp_pose (forward kinematics of the arm joints, unless `tcp_pose_topic` is set).
        object_pose_topic: geometry_msgs/PoseStamped -> obj_pose; "" when the contract has none.
        tcp_pose_topic: geometry_msgs/PoseStamped -> tcp_pose instead of forward kinematics.
        goal_topic: geometry_msgs/PointStamped or PoseStamped -> goal_pos; "" uses `goal_pos`.
        goal_pos / goal_frame: a fixed goal (3 numbers) in `goal_frame`.
        camera_topic: sensor_msgs/Image or CompressedImage -> rgb (cropped, resized with OpenCV).
        camera_crop: (x, y, width, height) cut from each frame before resizing; []: whole frame.
        command_topic: the commanded joint targets: trajectory_msgs/JointTrajectory (joints by
            name) or std_msgs/Float64MultiArray (in `command_joints` order) -> actions.
        command_joints: joint order of Float64MultiArray commands; []: the 9 Panda joints.
        action_topic: the policy node's decided actions before its safety filter
            (std_msgs/Float64MultiArray, sim2real.ros.policy_action; `~/action` of
            sim2real_policy_node). Where a bag has them, each one is a step: its action is the
            step's action and the observation is assembled at the stamp of the joint state the
            node acted on. "": never read.
        actions: "auto" (the decided actions where the bag has them, else reconstructed from
            the commands), "intent" (refuse bags without them) or "commands" (always reconstruct).
        actions_from: what actions are reconstructed from: "command" (the commands on
            `command_topic`) or "next_state" (each next measured joint state as the target: demos
            without a command topic, hand-guided or executed through MoveIt or the
            FollowJointTrajectory action; the episode's grid then runs on the joint states and
            the decided actions are not read). sim2real/data/bag_actions.py.
        next_state_gain: with next_state, the share of a commanded step the arm's controller
            completes within one control period; arm actions are the measured motion divided by
            it (1: the arm reaches its targets within a period).
        gripper: how finger targets become the gripper action: "binary" (-1 from a closing
            motion or at the closed limit until an opening motion or the open limit, +1 after:
            a gripper blocked by the object reads closed, and a rate-limited ramp reads as the
            command it is heading to) or "linear" (the exact inverse of the action scaling,
            for grippers driven to intermediate openings).
        gripper_from_state: when the commands carry no finger joint, take the gripper action
            from the measured finger position at the next step (else such logs are refused).
        success_topic: std_msgs/Bool -> per-step success; "" takes the episode's final success
            from its metadata (`/sim2real/episode` or the stop marker).
        episodes: "bag" (one episode per bag), "marker" (split at start/stop markers), or
            "auto" (marker when the marker topic has messages).
        marker_topic / episode_topic: as robot_bridge/bag_recorder.py writes them.
        time_source: "receive" (the bag's timestamps) or "header" (header stamps where set;
            they must be on the recording machine's clock).
        command_phase: the action of period k is the command in force at t_k + phase x period
            (0.5: mid-period, tolerating +-half a period of jitter in a 20 Hz command stream).
        max_gap_periods: a required topic silent for longer than this many control periods
            inside an episode is an error.
        base_frame / task_frame / base_in_task: frames, as the policy node's parameters
            (`base_in_task`: [x, y, z] or [x, y, z, qx, qy, qz, qw], used where the recorded tf
            does not connect the base and task frames; []: where the simulated tasks stand the
            arm's base, tasks.layout.ARM_SETUPS).
        tf_topic / tf_static_topic: the recorded tf2 transforms (tf2_msgs/TFMessage) that poses
            in other frames (`world`, a camera's) are resolved through; absent topics are fine.
        ignore_unknown_joints: drop joints other than the Panda's instead of refusing the log.
        urdf: the arm's URDF; "": ManiSkill's panda_v2.urdf.
    """

    joint_states_topic: str = "/joint_states"
    object_pose_topic: str = "/object_pose"
    tcp_pose_topic: str = ""
    goal_topic: str = ""
    goal_pos: list[float] = field(default_factory=list)
    goal_frame: str = "panda_link0"
    camera_topic: str = ""
    camera_crop: list[int] = field(default_factory=list)
    command_topic: str = "/arm_controller/joint_trajectory"
    command_joints: list[str] = field(default_factory=list)
    action_topic: str = "/sim2real_policy_node/action"
    actions: str = "auto"
    actions_from: str = "command"
    next_state_gain: float = 1.0
    gripper: str = "binary"
    gripper_from_state: bool = False
    success_topic: str = ""
    episodes: str = "auto"
    marker_topic: str = "/sim2real/episode_marker"
    episode_topic: str = "/sim2real/episode"
    time_source: str = "receive"
    command_phase: float = 0.5
    max_gap_periods: float = 3.0
    base_frame: str = "panda_link0"
    task_frame: str = "table"
    base_in_task: list[float] = field(default_factory=list)
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    ignore_unknown_joints: bool = False
    urdf: str = ""


@dataclass
class LeRobotOptions(_KeyMap):
    """LeRobotDataset v3 (meta/info.json, Parquet data files, MP4 videos).

    Args:
        features: contract feature -> parts (keys are columns; a video or image feature's
            key gives `rgb`). Empty: `observation.state` holds the contract's state features
            concatenated in contract order, and rgb comes from the only camera.
        action: parts of the action (keys are columns).
        action_kind: "task" (already the contract's normalised actions; the dataset's fps must
            equal the control frequency) or "joint_targets" (absolute joint targets: the arm's
            joints in its description's order, then one target per gripper joint or one for
            all, e.g. 7 + 1 or 2 for the Panda, 5 + 1 for the SO-100; converted to the control
            mode against the observed qpos with the arm's action scales and gripper mapping) or
            "next_state" (no action column: each next observed joint state is the target, the
            arm's motion divided by `next_state_gain`, the gripper read as open or closed; as
            rosbag's actions_from: next_state).
        joint_units: "radians" or "degrees" (LeRobot's SO-100 sets): the unit of the arm joints
            in qpos, qvel (per second) and joint targets, converted to radians.
        gripper_units: "joint" (a revolute jaw in `joint_units`, prismatic fingers in metres) or
            "percent" (0-100, newer LeRobot sets: 0 is the description's gripper.closed, 100
            its gripper.open).
        joint_signs / joint_offsets: calibration, one value per qpos joint (arm then gripper):
            position = sign x value (in the description's units) + offset (radians, or metres
            for prismatic fingers). A LeRobot calibration's zero and directions need not be the
            URDF's; []: +1 and 0 for every joint.
        derive: features computed from qpos instead of read: "tcp_pose" (forward kinematics of
            the arm's description, in the task frame of tasks.layout's ArmSetup) and "qvel"
            (central differences over the dataset's frames). LeRobot's SO-100 sets store joint
            positions only.
        success_key: a boolean column meaning "solved after this frame's action" (e.g.
            next.success); "": the final observation counts as solved when `assume_success`.
        assume_success: whether demos without a success column ended solved.
        camera_crop: (x, y, width, height) cut from each frame before resizing.
        max_gap_periods: timestamps further apart than this many control periods are an error.
        timestamp_tolerance_s: slack when matching timestamps (LeRobot stores float32 seconds).
        episodes: episode indices to read; []: all.
        next_state_gain: action_kind next_state: the share of a commanded step the arm's
            controller completes within one control period (1: it reaches its targets).
    """

    features: dict[str, list[Part]] = field(default_factory=dict)
    action: list[Part] = field(default_factory=lambda: [Part(key="action")])
    action_kind: str = "task"
    success_key: str = ""
    assume_success: bool = True
    camera_crop: list[int] = field(default_factory=list)
    max_gap_periods: float = 3.0
    timestamp_tolerance_s: float = 1e-4
    episodes: list[int] = field(default_factory=list)
    joint_units: str = "radians"
    gripper_units: str = "joint"
    joint_signs: list[float] = field(default_factory=list)
    joint_offsets: list[float] = field(default_factory=list)
    derive: list[str] = field(default_factory=list)
    next_state_gain: float = 1.0


def _maniskill_features() -> dict[str, list[Part]]:
    # ManiSkill's obs_mode "state_dict" (or rgb) of PushCube/PickCube: agent/ and extra/ groups.
    return {"qpos": [Part(key="obs/agent/qpos")], "qvel": [Part(key="obs/agent/qvel")],
            "tcp_pose": [Part(key="obs/extra/tcp_pose")], "obj_pose": [Part(key="obs/extra/obj_pose")],
            "goal_pos": [Part(key="obs/extra/goal_pos")], "rgb": [Part(key="obs/sensor_data/base_camera/rgb")]}


@dataclass
class ManiSkillOptions(_KeyMap):
    """ManiSkill trajectory files: `traj_<i>` groups in an .h5 plus the .json beside it.

    Args:
        features: contract feature -> parts (keys are paths inside `traj_<i>`, T+1 rows);
            features the contract does not name are ignored.
        action: parts of the action (`actions`, T rows, already normalised by ManiSkill).
        json_path: the trajectory JSON; "": the .h5 path with suffix .json.
        camera_crop: (x, y, width, height) cut from each frame before resizing.
    """

    features: dict[str, list[Part]] = field(default_factory=_maniskill_features)
    action: list[Part] = field(default_factory=lambda: [Part(key="actions")])
    json_path: str = ""
    camera_crop: list[int] = field(default_factory=list)


@dataclass
class RobomimicOptions(_KeyMap):
    """robomimic HDF5: `data/demo_<i>/{obs,next_obs}/<key>`, `actions`, `env_args` on `data`.

    Args:
        features: contract feature -> parts (keys like "obs/robot0_joint_pos": T rows; the
            final observation comes from the same key under next_obs/). Required: robosuite's
            frames and keys differ from the tasks' (configs/dataset/robomimic_lift.yaml).
        action: parts of the action (robosuite's OSC actions are already in [-1, 1]).
        success_key: a [T] dataset meaning "solved after this step" (> 0.5), e.g. "dones";
            "": the final observation counts as solved.
        camera_crop: (x, y, width, height) cut from each frame before resizing.
    """

    features: dict[str, list[Part]] = field(default_factory=dict)
    action: list[Part] = field(default_factory=lambda: [Part(key="actions")])
    success_key: str = "dones"
    camera_crop: list[int] = field(default_factory=list)


@dataclass
class DatasetConfig:
    """A demo source: its format, the contract its episodes get, and per-format options.

    Args:
        format: one of FORMATS, or "auto" (detected from the path).
        task: the task whose contract (tasks.spec.task_contract) the episodes have; "" takes
            it from the source where it records one (our HDF5; bags from bag_recorder).
        obs_mode / control_mode / image_size: the rest of that contract.
        arm: the arm description (configs/arm/<arm>.yaml) the data belongs to: it sets the
            contract's joint counts and control modes, and readers convert joint targets with
            its joints, action scales and gripper mapping.
        backend / domain: stored as the dataset's metadata ("" for a format's default:
            "real" for rosbag2 and LeRobot, the simulator for ManiSkill and robomimic).
        robot: the arm the recording was made on, stored likewise; "" is the contract's arm, and
            any other name must equal it (a Panda task's contract refuses robot=so100).
    """

    format: str = "auto"
    task: str = ""
    obs_mode: str = "state"
    control_mode: str = "pd_ee_delta_pos"
    image_size: int = 64
    arm: str = "panda"
    backend: str = ""
    domain: str = ""
    robot: str = ""
    rosbag: RosbagOptions = field(default_factory=RosbagOptions)
    lerobot: LeRobotOptions = field(default_factory=LeRobotOptions)
    maniskill: ManiSkillOptions = field(default_factory=ManiSkillOptions)
    robomimic: RobomimicOptions = field(default_factory=RobomimicOptions)


ConfigStore.instance().store(group="dataset", name="schema", node=DatasetConfig)
