"""The MuJoCo Panda of tasks.mujoco as a ROS 2 arm: the robot the bridge deploys to without hardware.

    sim2real-sim-robot --ros-args -p task:=push_cube -p domain:=target -p episode_length:=50

It serves what a ros2_control Panda serves (robot_bridge's ROS 2 interface, see
/work/shared/design/ros2.md):

- publishes `/joint_states` (panda_joint1..7, panda_finger_joint1/2: position, velocity, stamp)
  at `joint_state_rate_hz`, with the object pose (`PoseStamped`) and goal (`PointStamped`) in the
  base frame beside it, and optionally a camera (`CompressedImage` JPEG, or raw `Image`);
- executes joint position commands from either controller interface, `/<controller>/joint_trajectory`
  (`JointTrajectory`, interpolated linearly through its points from where the targets were on
  receipt) and `/<controller>/commands` (`Float64MultiArray`, in `controller_joints` order),
  through the task drives at 500 Hz physics (tasks.mujoco.joint_drive);
- runs in a world shifted by a `DomainParams` (`domain` names a preset of configs/domain/, and
  `domain.<field>` parameters override fields): the physical shifts as the task env applies them,
  action latency as a command delay of `action_latency_steps` control periods, observation noise
  on published joint positions, velocities and object positions (action noise has no meaning
  for joint targets and is not applied);
- `~/reset` (`std_msgs/Int32`: a seed, or -1 for the next one) starts a new episode: the task's
  reset (arm at rest, objects and goal drawn), then `settle_s` during which commands are
  ignored; `~/episode` (`Int32`) announces each new episode's index. With `episode_length` > 0
  an episode ends after that many control periods of simulated time: success is evaluated, and
  commands are ignored until the next reset. `~/status` (`std_msgs/String`, JSON) reports
  episode, steps, success and rejected commands at 1 Hz and on every reset and episode end;
- with `video_dir`, the first `video_episodes` episodes started by `~/reset` are rendered with the
  task env's viewer camera (what `sim2real.evaluate` records), one frame at the episode's start
  and one per control period, and written as `video_dir/episode_<k>.mp4` (k: 0, 1, ... in the
  order they end) when they end; the episode_end status names the file. The start-up episode
  is not recorded (under deploy it runs while the policy node loads), nor is an episode cut
  short by a reset. Frames are rendered after the joint state is published (about 10 ms each
  at 256 px with software EGL) and encoded on a thread.

`SimRobotCore` (robot_bridge.sim_robot_core) holds all of it without DDS; `run_sim_robot` wires it
to a transport, paced to the wall clock.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.ros import messages as m
from sim2real.ros.camera_info import CAMERA_INFO
from sim2real.ros.frames import TF_MESSAGE
from sim2real.ros.observation import POINT_STAMPED
from robot_bridge.ros_params import RosArgs, parse_ros_args, to_params
from robot_bridge.sim_robot_core import (
    CONTROL_PERIOD, INT32, NODE_NAME, SimRobotCore, SimRobotParams, int32_msg, log,
)
from robot_bridge.transport import QoS, Transport, node_transport



def sim_robot_params(argv: Sequence[str]) -> tuple[SimRobotParams, RosArgs]:
    ros = parse_ros_args(argv, NODE_NAME)
    return to_params(SimRobotParams, ros, {"domain": "domain_fields"}), ros


def run_sim_robot(params: SimRobotParams, ros: RosArgs | None = None, stop: threading.Event | None = None,
                  transport: Transport | None = None) -> dict[str, Any]:
    """Serve the simulated arm until `stop`, `duration_s` or a signal; returns the last status."""
    ros = ros or RosArgs(NODE_NAME)
    stop = stop or threading.Event()
    core = SimRobotCore(params)
    own = transport is None
    if transport is None:
        transport = node_transport(params, ros)
    topic = ros.topic
    try:
        if "parameters" in transport.capabilities:  # rclpy: `ros2 param list/get` show them, read-only
            from robot_bridge.node_parameters import declare_read_only

            declare_read_only(transport.node, params)  # type: ignore[attr-defined]
        states = transport.publisher(topic(params.joint_states_topic), m.JOINT_STATE, QoS.SENSOR_DATA)
        objects = transport.publisher(topic(params.object_pose_topic), m.POSE_STAMPED) \
            if params.object_pose_topic else None
        goals = transport.publisher(topic(params.goal_topic), POINT_STAMPED) if params.goal_topic else None
        camera = None
        if params.camera:
            kind = m.IMAGE if params.camera_format == "raw" else m.COMPRESSED_IMAGE
            camera = transport.publisher(topic(params.camera_topic), kind, QoS.SENSOR_DATA)
        camera_info = transport.publisher(topic(params.camera_info_topic), CAMERA_INFO) \
            if camera is not None and params.camera_info_topic else None
        tf_static = transport.publisher(topic(params.tf_static_topic), TF_MESSAGE,
                                        QoS(reliable=True, depth=1, transient_local=True)) \
            if camera_info is not None and params.tf_static_topic else None
        status_pub = transport.publisher(topic("~/status"), m.STRING)
        episode_pub = transport.publisher(topic("~/episode"), INT32)
        events: list[dict[str, Any]] = [core.status("reset")]

        def reset(msg: Any) -> None:
            events.append(core.reset(int(msg.data)))

        def command(handler: Any) -> Any:
            def callback(msg: Any) -> None:
                reasons = handler(msg)
                if reasons and not reasons[0].startswith("command ignored"):
                    log.warning("rejected a command: %s", "; ".join(reasons))
            return callback

        transport.subscribe(topic("~/reset"), INT32, reset)
        transport.subscribe(topic(f"{params.controller}/joint_trajectory"), m.JOINT_TRAJECTORY,
                            command(core.on_trajectory))
        transport.subscribe(topic(f"{params.controller}/commands"), m.FLOAT64_MULTI_ARRAY, command(core.on_forward))
        period = 1.0 / params.joint_state_rate_hz
        camera_period = 1.0 / params.camera_rate_hz if params.camera else math.inf
        start = next_state = time.monotonic()
        next_camera, next_status = start, start + 1.0
        lag = 0.0
        writers: list[threading.Thread] = []
        intervals: deque[float] = deque(maxlen=10_000)  # between joint state publications, ms
        last_state: float | None = None
        while not stop.is_set() and (params.duration_s <= 0 or time.monotonic() - start < params.duration_s):
            transport.spin_once(max(0.0, min(next_state - time.monotonic(), 0.05)))
            now = time.monotonic()
            # Status and the episode index go out before the next joint state, so that a policy
            # hears of a reset before it sees the arm back at its start.
            if events or now >= next_status:
                for event in events or [core.status()]:
                    event["realtime_lag_s"] = round(lag, 3)
                    status_pub.publish(m.string_msg(json.dumps(event)))
                episode_pub.publish(int32_msg(core.episode))
                if tf_static is not None:  # latched, and repeated for subscribers that missed it
                    tf_static.publish(core.camera_tf_msg(time.time()))
                if not events:
                    next_status = now + 1.0
                events.clear()
            if now >= next_state:
                events += core.advance(period)
                stamp = time.time()
                states.publish(core.joint_state_msg(stamp))
                if objects is not None:
                    objects.publish(core.object_pose_msg(stamp))
                if goals is not None:
                    goals.publish(core.goal_msg(stamp))
                if last_state is not None:
                    intervals.append((now - last_state) * 1e3)
                last_state = now
                core.capture_frame()
                while core.finished_videos:
                    writers.append(_write_video_thread(*core.finished_videos.pop(0), fps=1.0 / CONTROL_PERIOD))
                next_state += period
                if now - next_state > 0.5:  # far behind the wall clock: drop the backlog
                    lag += now - next_state
                    next_state = now + period
            if camera is not None and now >= next_camera:
                stamp = time.time()
                camera.publish(core.camera_msg(stamp))
                if camera_info is not None:
                    camera_info.publish(core.camera_info_msg(stamp))
                next_camera = max(next_camera + camera_period, now)
        for writer in writers:
            writer.join()
        final = core.status("stopped")
        final["realtime_lag_s"] = round(lag, 3)
        if intervals:
            p50, p99 = np.percentile(intervals, [50, 99])
            final["joint_state_interval_ms"] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3),
                                                "max": round(max(intervals), 3)}
        return final
    finally:
        if own:
            transport.close()


def _write_video_thread(path: Path, frames: list[np.ndarray], fps: float) -> threading.Thread:
    """Encode an episode's MP4 on a thread (ffmpeg runs in its own process), so the loop keeps its pace."""
    from sim2real.evaluate import write_video

    def write() -> None:
        try:
            write_video(path, frames, fps)
            log.info("wrote %s (%d frames)", path, len(frames))
        except Exception as exc:  # a failed video must not stop the arm
            log.error("could not write %s: %s", path, exc)

    thread = threading.Thread(target=write, name=f"video-{path.stem}")
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> None:
    """`sim2real-sim-robot [--params-file FILE] [--ros-args -p name:=value ...]`."""
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s: %(message)s")
    params, ros = sim_robot_params(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps(run_sim_robot(params, ros, stop)), flush=True)


if __name__ == "__main__":
    main()
