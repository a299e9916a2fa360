"""The simulated arm without DDS: `SimRobotCore` steps a MuJoCo arm of tasks.mujoco (the arm
its `arm` parameter names: configs/arm/<arm>.yaml) in a shifted world, takes joint commands, and produces the joint states, object pose, goal and
camera frames the ROS 2 node (robot_bridge.sim_robot) publishes; `SimRobotParams` are that
node's parameters.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sim2real.ros import messages as m
from sim2real.ros.observation import POINT_STAMPED

NODE_NAME = "sim2real_sim_robot"
INT32 = "std_msgs/msg/Int32"
CONTROL_PERIOD = 0.05  # tasks.layout.CONTROL_FREQ = 20 Hz
log = logging.getLogger(NODE_NAME)


@dataclass
class SimRobotParams:
    """ROS parameters of the simulated arm (see the module docstring)."""

    task: str = "push_cube"
    arm: str = "panda"  # configs/arm/<arm>.yaml; tasks.layout.ARM_SETUPS says where it stands
    seed: int = 0
    domain: str = "source"
    domain_fields: dict[str, Any] = field(default_factory=dict)
    episode_length: int = 0  # control periods per episode; 0: one endless episode
    settle_s: float = 0.1
    joint_state_rate_hz: float = 100.0
    controller: str = "arm_controller"
    controller_joints: list[str] = field(default_factory=list)  # default: the arm's joints, then the gripper's
    joint_states_topic: str = "joint_states"
    object_pose_topic: str = "object_pose"
    goal_topic: str = "goal"
    camera: bool = False
    camera_topic: str = "camera/image_raw/compressed"
    camera_format: str = "jpeg"  # jpeg or png (CompressedImage), raw (Image rgb8)
    camera_rate_hz: float = 10.0
    camera_size: int = 128
    # "": the policies' observation camera at camera_size (square); a scene camera's name, e.g.
    # "aruco_camera" (tasks.mujoco.scene: sees the ArUco markers on the cubes): that camera at
    # camera_width x camera_height (robot_bridge.sim_camera).
    camera_name: str = ""
    camera_width: int = 640
    camera_height: int = 480
    camera_frame: str = "camera_optical_frame"  # the images' header.frame_id (REP 103 optical frame)
    # sensor_msgs/CameraInfo beside each image, and the optical frame's pose in the base frame on
    # tf_static_topic; "": neither.
    camera_info_topic: str = ""
    tf_static_topic: str = "/tf_static"
    base_frame: str = ""  # "": the arm description's base_link
    transport: str = "auto"
    domain_id: int = -1  # -1: ROS_DOMAIN_ID from the environment
    allow_network: bool = False
    duration_s: float = 0.0  # stop after this long; 0: until stopped
    video_dir: str = ""  # "": no video
    video_episodes: int = 1  # with video_dir: how many episodes (started by ~/reset) to record


def int32_msg(value: int) -> Any:
    return m.TYPESTORE.types[INT32](data=int(value))


def point_stamped(frame: str, position: Sequence[float], stamp: float | None = None) -> Any:
    x, y, z = (float(v) for v in position)
    point = m.TYPESTORE.types["geometry_msgs/msg/Point"](x=x, y=y, z=z)
    return m.TYPESTORE.types[POINT_STAMPED](header=m.header(frame, stamp), point=point)


def _domain(params: SimRobotParams) -> Any:
    from sim2real.config import load_preset, preset_names
    from tasks.domain import DomainParams

    if params.domain not in preset_names("domain"):
        raise ValueError(f"parameter domain={params.domain!r}: expected one of {preset_names('domain')}")
    base = load_preset("domain", params.domain, DomainParams)
    names = {f.name for f in dataclasses.fields(DomainParams)} - {"ranges"}
    unknown = sorted(set(params.domain_fields) - names)
    if unknown:
        raise ValueError(f"parameters domain.{unknown[0]}: not a DomainParams field; expected domain.<one of "
                         f"{sorted(names)}>")
    return dataclasses.replace(base, **params.domain_fields)


class SimRobotCore:
    """The simulated arm without DDS: commands in, physics, messages out.

    Args:
        params: the node's parameters (task, seed, domain, controller joints, camera, ...).
    """

    def __init__(self, params: SimRobotParams) -> None:
        import tasks
        from sim2real.robot.description import load_arm
        from tasks.layout import arm_setup
        from tasks.mujoco.joint_drive import step_joint_targets

        self.params = params
        arm = load_arm(params.arm)
        self.joint_names = arm.joint_names + arm.gripper.joint_names
        self.base_frame = params.base_frame or arm.base_link
        # Object poses and goals are published in the base frame; the scene has it at this offset.
        self.base_in_task = np.asarray(arm_setup(params.arm, params.task).base_pos, dtype=np.float64)
        if params.video_dir and params.episode_length <= 0:
            raise ValueError(f"parameter video_dir={params.video_dir!r}: videos are written at each episode's "
                             f"end and need episode_length > 0, got {params.episode_length}")
        self.domain = _domain(params)
        self._step = step_joint_targets
        obs_camera = params.camera and not params.camera_name
        self.env = tasks.make_env(params.task, backend="mujoco", domain=self.domain,
                                  obs_mode="rgb" if obs_camera else "state", control_mode="pd_joint_delta_pos",
                                  image_size=params.camera_size, arm=params.arm)
        self.world = self.env.worlds[0]
        self.camera = self._camera() if params.camera else None
        self.timestep = float(self.world.model.opt.timestep)
        self.controller_joints = list(params.controller_joints) or list(self.joint_names)
        unknown = [n for n in self.controller_joints if n not in self.joint_names]
        if unknown or len(set(self.controller_joints)) != len(self.controller_joints):
            raise ValueError(f"parameter controller_joints={self.controller_joints}: expected distinct names "
                             f"among {list(self.joint_names)}")
        self.rng = np.random.default_rng(params.seed)
        self.episode = -1
        self.seed = params.seed
        self.sim_time = 0.0
        self.commands = 0
        self.rejected = 0
        self.last_reasons: deque[str] = deque(maxlen=6)
        self._pending: deque[tuple[float, list[tuple[float, np.ndarray]]]] = deque()
        self._segment: list[tuple[float, np.ndarray]] = []
        self.videos_written = 0  # video slots taken (episode_<k>.mp4, k < videos_written)
        self.render_ms: deque[float] = deque(maxlen=2000)
        self.finished_videos: list[tuple[Path, list[np.ndarray]]] = []  # for the caller to write
        self._frames: list[np.ndarray] | None = None  # the current episode's frames, when recorded
        self._video_path: Path | None = None
        self._frame_due = False
        if params.video_dir:
            self.env.render()  # the viewer's GL context takes 0.3-0.7 s to make: now, not in an episode
        self.reset(params.seed, requested=False)

    # ---- episodes ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, requested: bool = True) -> dict[str, Any]:
        """Start a new episode (seed -1 or None: the next seed after the last one).

        `requested`: started by `~/reset` (only such episodes are recorded as video).
        """
        if self._frames is not None and self.state != "done":
            log.info("episode %d was cut short by a reset: its video is dropped", self.episode)
        self._frames = [] if (requested and self.params.video_dir
                              and self.videos_written < self.params.video_episodes) else None
        self._video_path = None
        self.seed = self.seed + 1 if seed is None or seed < 0 else int(seed)
        self.env.reset(seed=self.seed)
        self.episode += 1
        self.episode_start = self.sim_time
        self.settle_until = self.sim_time + self.params.settle_s
        self.state = "settling" if self.params.settle_s > 0 else "running"
        self._frame_due = self.state == "running"  # the first frame: when the episode starts running
        self.steps = 0
        self.success = self.success_once = False
        self._pending.clear()
        self._segment = []
        return self.status("reset")

    @property
    def latency_s(self) -> float:
        return int(self.env.env_domains[0].action_latency_steps) * CONTROL_PERIOD

    # ---- commands ---------------------------------------------------------------------------
    def _reject(self, reasons: list[str]) -> list[str]:
        self.rejected += 1
        self.last_reasons.extend(reasons)
        return reasons

    def _accepting(self) -> list[str]:
        if self.state == "settling":
            return ["command ignored: the episode is settling after a reset"]
        if self.state == "done":
            return ["command ignored: the episode is over (publish ~/reset)"]
        return []

    def on_trajectory(self, msg: Any) -> list[str]:
        """trajectory_msgs/JointTrajectory: interpolate through its points (times from receipt)."""
        names = list(msg.joint_names)
        unknown = [n for n in names if n not in self.joint_names]
        if not names or unknown or len(set(names)) != len(names):
            return self._reject([f"trajectory joint_names {names}: expected distinct names among "
                                 f"{list(self.joint_names)}"])
        if not msg.points:
            return self._reject(["trajectory has no points"])
        points = []
        for k, point in enumerate(msg.points):
            pos = np.asarray(point.positions, dtype=np.float64)
            if pos.size != len(names) or not np.all(np.isfinite(pos)):
                return self._reject([f"trajectory point {k}: expected {len(names)} finite positions, got "
                                     f"{pos.tolist()}"])
            points.append((m.stamp_to_seconds(point.time_from_start), pos))
        times = [t for t, _ in points]
        if any(b < a for a, b in zip(times, times[1:])) or times[0] < 0:
            return self._reject([f"trajectory times_from_start {times} are not ascending from >= 0"])
        return self._command([(t, self._full(names, pos)) for t, pos in points])

    def on_forward(self, msg: Any) -> list[str]:
        """std_msgs/Float64MultiArray: position targets in controller_joints order, applied at once."""
        data = np.asarray(msg.data, dtype=np.float64)
        if data.size != len(self.controller_joints) or not np.all(np.isfinite(data)):
            return self._reject([f"commands: expected {len(self.controller_joints)} finite values "
                                 f"({', '.join(self.controller_joints)}), got {data.tolist()}"])
        return self._command([(0.0, self._full(self.controller_joints, data))])

    def _full(self, names: list[str], values: np.ndarray) -> dict[int, float]:
        return {self.joint_names.index(n): float(v) for n, v in zip(names, values)}

    def _command(self, points: list[tuple[float, dict[int, float]]]) -> list[str]:
        ignored = self._accepting()
        if ignored:
            return ignored
        self.commands += 1
        start = self.sim_time + self.latency_s
        self._pending.append((start, [(start + t, p) for t, p in points]))  # type: ignore[misc]
        return []

    def _targets_at(self, t: float) -> np.ndarray:
        """The drive targets at sim time t from the active segment (or the current targets)."""
        seg = self._segment
        if not seg:
            return self.world.targets.copy()
        if t >= seg[-1][0]:
            return seg[-1][1]
        for (t0, a), (t1, b) in zip(seg, seg[1:]):
            if t <= t1:
                return a + (b - a) * (t - t0) / (t1 - t0) if t1 > t0 else b
        return seg[0][1]

    def _activate(self, t: float) -> None:
        while self._pending and self._pending[0][0] <= t + 1e-12:
            start, points = self._pending.popleft()
            current = self._targets_at(t)
            seg = [(start, current.copy())]
            for when, values in points:
                row = seg[-1][1].copy()
                for i, v in values.items():  # type: ignore[attr-defined]
                    row[i] = v
                seg.append((when, row))
            self._segment = seg

    # ---- physics ----------------------------------------------------------------------------
    def advance(self, dt: float) -> list[dict[str, Any]]:
        """Simulate dt seconds (whole 2 ms steps); returns the events it caused (episode end)."""
        events = []
        for _ in range(max(1, round(dt / self.timestep))):
            self._activate(self.sim_time)
            self._step(self.world, self._targets_at(self.sim_time + self.timestep), 1)
            self.sim_time += self.timestep
            if self.state == "settling" and self.sim_time >= self.settle_until - 1e-9:
                self.state, self.episode_start = "running", self.sim_time
                self._frame_due = True
            if self.state == "running":
                steps = int((self.sim_time - self.episode_start) / CONTROL_PERIOD + 1e-6)
                if steps > self.steps:
                    self.steps = steps
                    self.success = bool(self.env.rules.evaluate(self.world)["success"])
                    self.success_once |= self.success
                    self._frame_due = True
                    if 0 < self.params.episode_length <= steps:
                        self.state = "done"
                        self._pending.clear()
                        self._segment = []
                        if self._frames is not None:
                            self._video_path = Path(self.params.video_dir) / f"episode_{self.videos_written}.mp4"
                            self.videos_written += 1
                        events.append(self.status("episode_end"))
        return events

    # ---- video ------------------------------------------------------------------------------
    def capture_frame(self) -> bool:
        """Render a frame of a recorded episode when a control period (or its start) has passed
        since the last one; at the end of the episode, hand its frames to `finished_videos`.

        Called after publishing the state, so that rendering does not delay it; returns whether
        a frame was rendered.
        """
        if self._frames is None or not self._frame_due:
            return False
        self._frame_due = False
        start = time.perf_counter()
        self._frames.append(self.env.render()[0].cpu().numpy())
        self.render_ms.append((time.perf_counter() - start) * 1e3)
        if self.state == "done" and self._video_path is not None:
            self.finished_videos.append((self._video_path, self._frames))
            self._frames, self._video_path = None, None
        return True

    # ---- readings ---------------------------------------------------------------------------
    def _noise(self, size: int) -> np.ndarray:
        std = float(self.env.env_domains[0].obs_noise_std)
        return self.rng.normal(0.0, std, size) if std > 0 else np.zeros(size)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        idx, d = self.env.index, self.world.data
        q = np.concatenate([d.qpos[idx.arm_qpos], d.qpos[idx.finger_qpos]])
        qd = np.concatenate([d.qvel[idx.arm_dof], d.qvel[idx.finger_dof]])
        return q, qd

    def tcp_pose(self) -> np.ndarray:
        """TCP pose in the task frame (as the task env observes it)."""
        return self.world.tcp_pose()

    def joint_state_msg(self, stamp: float) -> Any:
        q, qd = self.joint_state()
        return m.joint_state(self.joint_names, q + self._noise(q.size), qd + self._noise(qd.size), stamp=stamp)

    def object_pose_msg(self, stamp: float) -> Any:
        pose = np.asarray(self.env.rules.obj_pose(self.world), dtype=np.float64)
        pos = pose[:3] - self.base_in_task + self._noise(3)
        w, x, y, z = pose[3:]
        return m.pose_stamped(self.base_frame, pos, (x, y, z, w), stamp=stamp)

    def goal_msg(self, stamp: float) -> Any:
        goal = np.asarray(self.env.rules.goal_pos(self.world), dtype=np.float64) - self.base_in_task
        return point_stamped(self.base_frame, goal, stamp)

    def _camera(self) -> Any:
        from robot_bridge.sim_camera import SimCamera
        from tasks.mujoco.scene import OBS_CAMERA

        p = self.params
        if p.camera_name:
            return SimCamera(self.env, p.camera_name, p.camera_width, p.camera_height)
        return SimCamera(self.env, OBS_CAMERA, p.camera_size, p.camera_size) if p.camera_info_topic else None

    def camera_msg(self, stamp: float) -> Any:
        frame = self.camera.render() if self.params.camera_name else self.env.camera_frame(0)
        frame_id = self.params.camera_frame
        if self.params.camera_format == "raw":
            return m.image(frame, stamp=stamp, frame_id=frame_id)
        ext = ".png" if self.params.camera_format == "png" else ".jpg"
        ok, data = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {frame.shape} frame as {ext}")
        return m.compressed_image(data.tobytes(), "png" if ext == ".png" else "jpeg", stamp=stamp, frame_id=frame_id)

    def camera_info_msg(self, stamp: float) -> Any:
        """The published camera's sensor_msgs/CameraInfo (a pinhole from MuJoCo's fovy)."""
        from sim2real.ros.camera_info import camera_info

        return camera_info(self.camera.intrinsics, self.params.camera_frame, stamp)

    def camera_tf_msg(self, stamp: float) -> Any:
        """tf2_msgs/TFMessage placing the camera's optical frame in the base frame (for /tf_static)."""
        from sim2real.ros.frames import pose_matrix, tf_message, transform_stamped

        # The scene's base stands at base_in_task with the task frame's axes.
        in_base = np.linalg.inv(pose_matrix(self.base_in_task)) @ self.camera.optical_in_task()
        return tf_message([transform_stamped(self.base_frame, self.params.camera_frame, in_base, stamp)])

    def status(self, event: str = "periodic") -> dict[str, Any]:
        status = {"node": NODE_NAME, "event": event, "task": self.params.task, "domain": self.domain.name,
                  "episode": self.episode, "seed": self.seed, "state": self.state, "steps": self.steps,
                  "success": self.success, "success_once": self.success_once, "sim_time": round(self.sim_time, 4),
                  "tcp_pose": [round(float(v), 5) for v in self.tcp_pose()], "commands": self.commands,
                  "rejected": self.rejected, "last_reasons": list(self.last_reasons),
                  # The clock the arm stamps its messages with: after a reset, what is stamped earlier is
                  # the episode before (a recorder that hears of the reset late uses this to cut).
                  "stamp_ns": time.time_ns()}
        if self.camera is not None and self.camera.render_ms:
            status["camera_render_p50_ms"] = round(float(np.median(self.camera.render_ms)), 3)
        if self.params.video_dir:
            status["video"] = str(self._video_path) if self._video_path is not None else None
            status["render_p50_ms"] = round(float(np.median(self.render_ms)), 3) if self.render_ms else None
        return status
