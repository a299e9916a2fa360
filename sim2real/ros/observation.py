"""ROS 2 messages -> the named observation features of a checkpoint's contract.

The tasks observe (tasks/spec.py): `qpos` and `qvel` (the arm's joints, then its gripper joints:
[9] on the Panda, panda_joint1..7 and the two fingers), `tcp_pose` [7] (position + quaternion w, x, y, z), `obj_pose` [7], `goal_pos` [3],
all in the task (table) frame, and optionally `rgb` uint8 [3, H, W]. On the robot:

- joint states arrive in any order and are reordered by name; velocities give `qvel`;
- `tcp_pose` is forward kinematics of the measured joints (the arm's chain), moved from the base
  frame to the task frame (by tf when it connects them, else `base_in_task`, as in tasks.layout),
  with the quaternion written the way MuJoCo writes it (`mujoco_quat`: for the gripper pointing
  down w is near 0 and the sign convention decides whether x is +1 or -1, which the policy saw);
- object poses (`PoseStamped`, quaternion x, y, z, w) and goals (`PointStamped`/`PoseStamped` or a
  parameter) come in any frame `header.frame_id` names (empty means the base frame) that the
  transforms from `/tf` and `/tf_static` connect to the task frame (sim2real.ros.frames), looked
  up at the message's stamp; the base and task frames resolve without tf through `base_in_task`;
- camera frames (`Image` or `CompressedImage`) are decoded, cropped and resized with OpenCV.

A message that cannot be used is rejected with reasons and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim2real.ros import messages as m
from sim2real.robot.arm_model import ARM_JOINT_NAMES, FINGER_JOINT_NAMES
from sim2real.robot.kinematics import KinematicChain
from sim2real.robot.rotations import matrix_to_quat
from sim2real.ros.frames import Frames, quat_wxyz_multiply
from sim2real.ros.images import crop_resize, decode_image_msg
from sim2real.contract import Contract, ContractMismatch
from tasks.layout import ROBOT_BASE_POS

JOINT_NAMES = ARM_JOINT_NAMES + FINGER_JOINT_NAMES
BASE_IN_TASK = ROBOT_BASE_POS  # where the simulated tasks stand the Panda's base in their table frame
__all__ = ["BASE_IN_TASK", "Frames", "JointReading", "ObservationAssembler", "mujoco_quat"]
POINT_STAMPED = "geometry_msgs/msg/PointStamped"
# What the bridge can assemble besides qpos and qvel (one value per joint of the arm's model, arm
# then gripper: the assembler sizes them), with the shapes the tasks give them.
POSE_FEATURES: dict[str, tuple[int, ...]] = {"tcp_pose": (7,), "obj_pose": (7,), "goal_pos": (3,)}


def mujoco_quat(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> quaternion (w, x, y, z) exactly as MuJoCo's mju_mat2Quat computes it.

    The largest of w, x, y, z is made positive (not w, as `kinematics.matrix_to_quat` does), so
    observations match the simulator's at every orientation, including w ~ 0.
    """
    r = np.asarray(rot, dtype=np.float64).reshape(9)
    if r[0] + r[4] + r[8] > 0:
        w = 0.5 * math.sqrt(1.0 + r[0] + r[4] + r[8])
        q = np.array([w, 0.25 * (r[7] - r[5]) / w, 0.25 * (r[2] - r[6]) / w, 0.25 * (r[3] - r[1]) / w])
    elif r[0] > r[4] and r[0] > r[8]:
        x = 0.5 * math.sqrt(1.0 + r[0] - r[4] - r[8])
        q = np.array([0.25 * (r[7] - r[5]) / x, x, 0.25 * (r[1] + r[3]) / x, 0.25 * (r[2] + r[6]) / x])
    elif r[4] > r[8]:
        y = 0.5 * math.sqrt(1.0 - r[0] + r[4] - r[8])
        q = np.array([0.25 * (r[2] - r[6]) / y, 0.25 * (r[1] + r[3]) / y, y, 0.25 * (r[5] + r[7]) / y])
    else:
        z = 0.5 * math.sqrt(1.0 - r[0] - r[4] + r[8])
        q = np.array([0.25 * (r[3] - r[1]) / z, 0.25 * (r[2] + r[6]) / z, 0.25 * (r[5] + r[7]) / z, z])
    return q / np.linalg.norm(q)


@dataclass(frozen=True)
class JointReading:
    """A validated joint state: positions and velocities in the arm's joint order, stamp (s) or None."""

    position: np.ndarray
    velocity: np.ndarray
    stamp: float | None


@dataclass
class _Input:
    value: np.ndarray
    time: float  # stamp, or receipt time for unstamped messages (s, wall clock)


def _finite(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)))


class ObservationAssembler:
    """Builds the contract's named features from the latest accepted messages.

    Args:
        contract: the checkpoint's contract.
        model: the arm's kinematics (for `tcp_pose`); its arm joints then gripper joints are the
            joints read from joint states, in that order (`joint_names`).
        sources: feature -> where it comes from (a topic or parameter name), for every
            optional input configured (obj_pose, goal_pos, rgb); used to refuse a contract
            that needs an input nobody provides.
        frames: base and task frames.
        max_input_age_s: object poses and camera frames older than this are stale (the goal is
            not: it is a fixed target until replaced).
        ignore_unknown_joints: accept joint states carrying joints other than the arm's (their
            values are dropped); otherwise such messages are rejected.
        image_crop: (x, y, width, height) cut from camera frames before resizing; None: whole frame.

    Raises:
        ContractMismatch: a feature the bridge cannot assemble, a shape it cannot give, or
            an input without a configured source.
    """

    def __init__(self, contract: Contract, model: KinematicChain, sources: Mapping[str, str],
                 frames: Frames | None = None, max_input_age_s: float = 0.5, ignore_unknown_joints: bool = False,
                 image_crop: tuple[int, int, int, int] | None = None) -> None:
        self.contract = contract
        self.model = model
        # Each assembler has its own frames: their tf graph fills as messages arrive.
        self.frames = frames if frames is not None else Frames()
        self.max_input_age_s = max_input_age_s
        self.ignore_unknown_joints = ignore_unknown_joints
        self.image_crop = image_crop
        self.joint_names = model.joint_names + tuple(model.gripper_limits)
        known = {"qpos": (len(self.joint_names),), "qvel": (len(self.joint_names),), **POSE_FEATURES}
        problems = []
        for name, feature in contract.features.items():
            if feature.kind == "rgb":
                if "rgb" not in sources:
                    problems.append(f"feature {name!r} (rgb{list(feature.shape)}) needs a camera: set camera_topic")
                continue
            if name not in known:
                problems.append(f"feature {name!r} {list(feature.shape)} cannot be assembled from ROS topics (the "
                                f"bridge provides {', '.join(known)}, rgb)")
            elif feature.shape != known[name]:
                problems.append(f"feature {name!r} is {list(feature.shape)} in the checkpoint, arm "
                                f"{contract.arm!r} gives {list(known[name])}")
            elif name in ("obj_pose", "goal_pos") and name not in sources:
                hint = "object_pose_topic" if name == "obj_pose" else "goal_topic or goal_pos"
                problems.append(f"feature {name!r} has no source: set {hint}")
        if problems:
            raise ContractMismatch("the checkpoint's contract cannot be met on this robot: " + "; ".join(problems))
        self.needs = set(contract.features)
        self.joints: JointReading | None = None
        self.joints_time = -math.inf
        self.inputs: dict[str, _Input] = {}
        self.sources = dict(sources)

    # ---- joint states ----------------------------------------------------------------------
    def check_first_joint_state(self, msg: object) -> None:
        """The start-up check: the first joint state must carry every joint the contract observes.

        Raises:
            ContractMismatch: names the joints found and the ones missing.
        """
        names = list(getattr(msg, "name", []))
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            raise ContractMismatch(
                f"the first joint state has joints {names}; the checkpoint observes qpos/qvel of "
                f"{list(self.joint_names)}: missing {missing} (check the joint_states topic and the robot's joint names)")

    def parse_joint_state(self, msg: object) -> tuple[JointReading | None, list[str]]:
        """Validate and reorder a sensor_msgs/JointState; (reading, []) or (None, reasons)."""
        names = list(msg.name)  # type: ignore[attr-defined]
        pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
        vel = np.asarray(msg.velocity, dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
        reasons = []
        if pos.size != len(names):
            reasons.append(f"joint state has {len(names)} names but {pos.size} positions")
        if vel.size not in (0, len(names)):
            reasons.append(f"joint state has {len(names)} names but {vel.size} velocities")
        if vel.size == 0 and "qvel" in self.needs:
            reasons.append("joint state has no velocities (the contract observes qvel)")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            reasons.append(f"joint state repeats names {repeated}")
        unknown = [n for n in names if n not in self.joint_names]
        if unknown and not self.ignore_unknown_joints:
            reasons.append(f"joint state has unknown joints {unknown} (set ignore_unknown_joints to drop them)")
        missing = [n for n in self.joint_names if n not in names]
        if missing:
            reasons.append(f"joint state lacks joints {missing}")
        if reasons:
            return None, reasons
        order = [names.index(n) for n in self.joint_names]
        position = pos[order]
        velocity = vel[order] if vel.size else np.zeros(len(self.joint_names))
        if not (_finite(position) and _finite(velocity)):
            bad = [n for n, p, v in zip(self.joint_names, position, velocity) if not (np.isfinite(p) and np.isfinite(v))]
            return None, [f"joint state has NaN/inf for {bad}"]
        stamp = m.stamp_to_seconds(msg.header.stamp)  # type: ignore[attr-defined]
        return JointReading(position, velocity, stamp if stamp > 0 else None), []

    def set_joint_state(self, reading: JointReading, time: float) -> None:
        """Store a reading the safety filter accepted (`time`: its stamp or receipt time)."""
        self.joints = reading
        self.joints_time = time

    # ---- other inputs ------------------------------------------------------------------------
    def _store(self, feature: str, value: np.ndarray, stamp: float, now: float) -> list[str]:
        time = stamp if stamp > 0 else now
        if not math.isfinite(time) or (feature in self.inputs and time < self.inputs[feature].time):
            return [f"{feature}: stamp {time:.6f} is older than the last accepted {self.inputs[feature].time:.6f}"]
        if feature != "goal_pos" and now - time > self.max_input_age_s:
            return [f"{feature}: message is {now - time:.3f} s old (max_input_age_s {self.max_input_age_s})"]
        self.inputs[feature] = _Input(value, time)
        return []

    def on_object_pose(self, msg: object, now: float) -> list[str]:
        """geometry_msgs/PoseStamped of the object -> obj_pose (task frame, quaternion w, x, y, z)."""
        pose, frame = msg.pose, msg.header.frame_id  # type: ignore[attr-defined]
        position = np.array([pose.position.x, pose.position.y, pose.position.z])
        xyzw = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
        if not (_finite(position) and _finite(xyzw)):
            return [f"object pose has NaN/inf: {position.tolist()} {xyzw.tolist()}"]
        norm = float(np.linalg.norm(xyzw))
        if abs(norm - 1.0) > 1e-3:
            return [f"object pose quaternion has norm {norm:.4f}, expected 1"]
        stamp = m.stamp_to_seconds(msg.header.stamp)  # type: ignore[attr-defined]
        to_task = self.frames.to_task_matrix(frame, stamp if stamp > 0 else None)
        if to_task is None:
            return [self._frame_reason("object pose", frame)]
        position = to_task[:3, :3] @ position + to_task[:3, 3]
        # Composed as quaternions, not through a matrix, so the sign the sender chose survives
        # (an identity frame change returns the published quaternion exactly).
        wxyz = quat_wxyz_multiply(matrix_to_quat(to_task[:3, :3]),
                                  np.array([xyzw[3], xyzw[0], xyzw[1], xyzw[2]]) / norm)
        return self._store("obj_pose", np.concatenate([position, wxyz]), stamp, now)

    def on_goal(self, msg: object, now: float) -> list[str]:
        """geometry_msgs/PointStamped or PoseStamped of the goal -> goal_pos (task frame)."""
        point = msg.point if m.type_of(msg) == POINT_STAMPED else msg.pose.position  # type: ignore[attr-defined]
        frame = msg.header.frame_id  # type: ignore[attr-defined]
        position = np.array([point.x, point.y, point.z])
        if not _finite(position):
            return [f"goal has NaN/inf: {position.tolist()}"]
        stamp = m.stamp_to_seconds(msg.header.stamp)  # type: ignore[attr-defined]
        task = self.frames.to_task(position, frame, stamp if stamp > 0 else None)
        if task is None:
            return [self._frame_reason("goal", frame)]
        return self._store("goal_pos", task, stamp, now)

    def set_goal(self, position: tuple[float, ...] | list[float], frame: str, now: float) -> None:
        """A fixed goal from a parameter (raises ValueError for a bad value or frame)."""
        values = np.asarray(position, dtype=np.float64).reshape(-1)
        if values.shape != (3,) or not _finite(values):
            raise ValueError(f"goal_pos: expected 3 finite numbers, got {list(position)}")
        task = self.frames.to_task(values, frame)
        if task is None:
            raise ValueError(self._frame_reason("goal_pos parameter", frame))
        self.inputs["goal_pos"] = _Input(task, now)

    def on_image(self, msg: object, now: float) -> list[str]:
        """sensor_msgs/Image or CompressedImage -> rgb uint8 [3, H, W] of the contract's size."""
        shape = self.contract.rgb_shape
        if shape is None:
            return []
        try:
            image = crop_resize(decode_image_msg(msg), (shape[1], shape[2]), self.image_crop)
        except ValueError as exc:
            return [f"camera frame: {exc}"]
        return self._store("rgb", image, m.stamp_to_seconds(msg.header.stamp), now)  # type: ignore[attr-defined]

    def on_tf(self, msg: object, static: bool = False) -> list[str]:
        """tf2_msgs/TFMessage from /tf (static False) or /tf_static -> the frame graph."""
        return self.frames.graph.add_message(msg, static)

    def _frame_reason(self, what: str, frame: str) -> str:
        return f"{what} is in frame {frame!r}, which does not resolve; expected {self.frames.describe()}"

    # ---- the observation ---------------------------------------------------------------------
    def tcp_pose(self, arm_q: np.ndarray, time: float | None = None) -> np.ndarray:
        """TCP position (task frame) and orientation (w, x, y, z, MuJoCo's convention) [7]."""
        rot, pos = self.model.fk_matrix(arm_q)
        base = self.frames.base_to_task(time)
        return np.concatenate([base[:3, :3] @ pos + base[:3, 3], mujoco_quat(base[:3, :3] @ rot)])

    def missing(self, now: float) -> list[str]:
        """Why no observation can be made now ([] when one can)."""
        reasons = []
        if self.joints is None:
            reasons.append("no joint state accepted yet")
        elif now - self.joints_time > self.max_input_age_s:
            reasons.append(f"joint state is {now - self.joints_time:.3f} s old")
        for name in self.needs & {"obj_pose", "goal_pos", "rgb"}:
            rgb_name = "rgb" if self.contract.features[name].kind == "rgb" else name
            entry = self.inputs.get(rgb_name)
            if entry is None:
                reasons.append(f"{name}: nothing received yet from {self.sources.get(rgb_name, '?')}")
            elif rgb_name != "goal_pos" and now - entry.time > self.max_input_age_s:
                reasons.append(f"{name}: last input is {now - entry.time:.3f} s old (max_input_age_s "
                               f"{self.max_input_age_s})")
        return reasons

    def observation(self) -> dict[str, np.ndarray]:
        """The named features (no batch dim): state features float32, rgb uint8. Call when `missing` is []."""
        if self.joints is None:
            raise RuntimeError("observation(): no joint state yet (check missing() first)")
        values = {"qpos": self.joints.position, "qvel": self.joints.velocity,
                  "tcp_pose": self.tcp_pose(self.joints.position[:self.model.dof], self.joints.stamp)}
        out = {}
        for name, feature in self.contract.features.items():
            if feature.kind == "rgb":
                out[name] = self.inputs["rgb"].value
            else:
                value = values[name] if name in values else self.inputs[name].value
                out[name] = np.asarray(value, dtype=np.float32).reshape(feature.shape)
        return out
