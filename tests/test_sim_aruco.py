"""The simulated arm's ArUco camera (robot_bridge.sim_camera, tasks.mujoco.scene's marker on the
cube) read by the ArUco node's core, in process without DDS: the messages the two nodes exchange,
and the marker pose against the simulator's true object pose."""

import time

import numpy as np
import pytest

pytest.importorskip("mujoco")
cv2 = pytest.importorskip("cv2")

from robot_bridge.aruco_core import ArucoNodeCore, ArucoNodeParams  # noqa: E402
from robot_bridge.sim_robot_core import SimRobotCore, SimRobotParams  # noqa: E402
from sim2real.ros import messages as m  # noqa: E402
from sim2real.ros.camera_info import CAMERA_INFO, from_camera_info  # noqa: E402
from sim2real.ros.frames import TF_MESSAGE, quat_xyzw_to_matrix  # noqa: E402
from tasks.layout import ARUCO_MARKER_FRACTION, arm_setup  # noqa: E402


def aruco_params(half: float, **overrides) -> ArucoNodeParams:
    # The sheet's top is 0.2 mm above the face (tasks.mujoco.scene.build_cube).
    return ArucoNodeParams(marker_ids=[0], marker_size=2 * half * ARUCO_MARKER_FRACTION, output_frame="panda_link0",
                           object_pose_topic="/object_pose", marker_to_object=[0.0, 0.0, -(half + 2e-4)],
                           corner_refinement="apriltag", **overrides)


def test_the_sim_arms_marker_gives_the_cube_pose_within_5_mm():
    sim = SimRobotCore(SimRobotParams(task="push_cube", camera=True, camera_name="aruco_camera",
                                      camera_info_topic="/camera/camera_info", settle_s=0.0))
    half = arm_setup("panda", "push_cube").cube_half_size
    core = ArucoNodeCore(aruco_params(half))
    info = m.deserialize(m.serialize(sim.camera_info_msg(1.0)), CAMERA_INFO)
    intr = from_camera_info(info)
    assert (intr.width, intr.height, info.header.frame_id) == (640, 480, "camera_optical_frame")
    core.on_camera_info(info)
    tf = m.deserialize(m.serialize(sim.camera_tf_msg(1.0)), TF_MESSAGE)
    (edge,) = tf.transforms
    assert (edge.header.frame_id, edge.child_frame_id) == ("panda_link0", "camera_optical_frame")
    core.on_tf(tf, static=True)
    errors, angles, render_ms, detect_ms = [], [], [], []
    for seed in range(6):
        sim.reset(seed)
        sim.advance(0.05)
        start = time.perf_counter()
        image = sim.camera_msg(2.0 + seed)  # JPEG, as the node publishes it
        render_ms.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        result = core.on_image(image)
        detect_ms.append((time.perf_counter() - start) * 1e3)
        assert 0 in result.poses, core.status()
        got, truth = result.poses[0], sim.object_pose_msg(0.0)  # the true pose (no noise in domain source)
        assert got.header.frame_id == truth.header.frame_id == "panda_link0"
        p, t = got.pose.position, truth.pose.position
        errors.append(np.linalg.norm([p.x - t.x, p.y - t.y, p.z - t.z]))
        q, r = got.pose.orientation, truth.pose.orientation
        rel = quat_xyzw_to_matrix((q.x, q.y, q.z, q.w)) @ quat_xyzw_to_matrix((r.x, r.y, r.z, r.w)).T
        angles.append(np.degrees(np.linalg.norm(cv2.Rodrigues(rel)[0])))
    print(f"marker vs true cube: position error mm {np.round(np.array(errors) * 1e3, 2).tolist()}, "
          f"angle deg {np.round(angles, 2).tolist()}; render+encode p50 {np.median(render_ms):.1f} ms, "
          f"decode+detect p50 {np.median(detect_ms):.1f} ms")
    assert max(errors) < 0.005, errors
    assert max(angles) < 3.0, angles


def test_the_marker_is_drawn_only_by_the_aruco_camera():
    """The policies' observation camera sees the scene it was trained on: no marker in it."""
    sim = SimRobotCore(SimRobotParams(task="push_cube", camera=True, camera_size=128, settle_s=0.0))
    core = ArucoNodeCore(ArucoNodeParams(marker_ids=[0], marker_size=0.03, image_type="compressed"))
    from robot_bridge.sim_camera import SimCamera
    from sim2real.ros.camera_info import camera_info

    core.on_camera_info(camera_info(SimCamera(sim.env, "base_camera", 128, 128).intrinsics, "camera_optical_frame"))
    assert core.on_image(sim.camera_msg(1.0)).poses == {}
    assert core.skipped["no_camera_info"] == 0 and core.detect_ms
