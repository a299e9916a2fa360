"""One deterministic sample of every message type the bridge uses, shared by the bridge tests.

`RCLPY_SAMPLES` builds the same messages with rclpy classes (run inside the rclpy venv by the
interop tests), so golden payloads from rclpy can be compared with ours after decoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_bridge.diagnostics import policy_diagnostics
from sim2real.ros import messages as m

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
IMAGE_PIXELS = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
JPEG_BYTES = bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes(range(40)) + bytes([0xFF, 0xD9])


def sample_messages() -> dict[str, Any]:
    """rosbags messages keyed by type name, one per bridge type."""
    return {
        m.JOINT_STATE: m.joint_state(
            JOINTS, [-1.0 + 2.0 * i / 6 for i in range(7)], np.full(7, 0.25), stamp=12.5, effort=np.arange(7.0)
        ),
        m.IMAGE: m.image(IMAGE_PIXELS, stamp=1.0, frame_id="camera"),
        m.COMPRESSED_IMAGE: m.compressed_image(JPEG_BYTES, "jpeg", stamp=2.0, frame_id="camera"),
        m.POSE_STAMPED: m.pose_stamped("camera", [0.1, -0.2, 0.3], [0.0, 0.0, 0.6, 0.8], stamp=3.25),
        m.JOINT_TRAJECTORY: m.joint_trajectory(
            JOINTS[:3], [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [0.5, 1.0], velocities=[[0, 0, 0], [1, 1, 1]]
        ),
        m.FLOAT64_MULTI_ARRAY: m.float64_multi_array([0.1, -2.5, 3e10]),
        m.BOOL: m.bool_msg(True),
        m.STRING: m.string_msg("status: ok, ünïcode"),
        m.DIAGNOSTIC_ARRAY: policy_diagnostics({"state": "running", "overruns": 2, "safety": {"held": 1}},
                                               "/left/sim2real_policy_node", "panda", 4.5),
    }


# The same messages built with rclpy (executed by the rclpy venv's python). Defines `SAMPLES`.
RCLPY_SAMPLES = """
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
js = JointState()
js.header.stamp = Time(sec=12, nanosec=500000000)
js.name = JOINTS
js.position = [-1.0 + 2.0 * i / 6 for i in range(7)]
js.velocity = [0.25] * 7
js.effort = [float(i) for i in range(7)]
img = Image()
img.header.stamp = Time(sec=1)
img.header.frame_id = "camera"
img.height, img.width, img.encoding, img.is_bigendian, img.step = 4, 3, "rgb8", 0, 9
img.data = bytes(range(36))
cimg = CompressedImage()
cimg.header.stamp = Time(sec=2)
cimg.header.frame_id = "camera"
cimg.format = "jpeg"
cimg.data = bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes(range(40)) + bytes([0xFF, 0xD9])
pose = PoseStamped()
pose.header.stamp = Time(sec=3, nanosec=250000000)
pose.header.frame_id = "camera"
pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.1, -0.2, 0.3
q = pose.pose.orientation
q.x, q.y, q.z, q.w = 0.0, 0.0, 0.6, 0.8
traj = JointTrajectory()
traj.joint_names = JOINTS[:3]
for pos, vel, t in (([0.1, 0.2, 0.3], [0.0] * 3, Duration(sec=0, nanosec=500000000)),
                     ([0.4, 0.5, 0.6], [1.0] * 3, Duration(sec=1))):
    traj.points.append(JointTrajectoryPoint(positions=pos, velocities=vel, time_from_start=t))
arr = Float64MultiArray(data=[0.1, -2.5, 3e10])
diag = DiagnosticArray()
diag.header.stamp = Time(sec=4, nanosec=500000000)
pairs = [("state", "running"), ("control_hz", ""), ("achieved_hz", ""), ("ticks", ""), ("policy_steps", ""),
         ("overruns", "2"), ("missed_ticks", ""), ("estop", ""), ("watchdog_trips", ""), ("loop_p99_ms", ""),
         ("safety.held", "1")]
diag.status = [DiagnosticStatus(level=DiagnosticStatus.WARN, name="/left/sim2real_policy_node: policy loop",
                                message="2 overruns; safety filter rejected 0 and held 1 commands", hardware_id="panda",
                                values=[KeyValue(key=k, value=v) for k, v in pairs])]
SAMPLES = {
    "sensor_msgs/msg/JointState": js,
    "sensor_msgs/msg/Image": img,
    "sensor_msgs/msg/CompressedImage": cimg,
    "geometry_msgs/msg/PoseStamped": pose,
    "trajectory_msgs/msg/JointTrajectory": traj,
    "std_msgs/msg/Float64MultiArray": arr,
    "std_msgs/msg/Bool": Bool(data=True),
    "std_msgs/msg/String": String(data="status: ok, ünïcode"),
    "diagnostic_msgs/msg/DiagnosticArray": diag,
}
"""
