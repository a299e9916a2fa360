"""CameraInfo (sim2real.ros.camera_info) and the ArUco node's core (robot_bridge.aruco_core) on
images OpenCV renders from known marker poses at 640x480, with and without lens distortion."""

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from robot_bridge.aruco_core import ArucoNodeCore, ArucoNodeParams  # noqa: E402
from robot_bridge.aruco_node import aruco_node_params  # noqa: E402
from sim2real.ros import messages as m  # noqa: E402
from sim2real.ros.camera_info import (  # noqa: E402
    CAMERA_INFO, CameraIntrinsics, camera_info, camera_info_from_bag, from_camera_info,
)
from sim2real.ros.frames import pose_matrix, quat_xyzw_to_matrix, tf_message, transform_stamped  # noqa: E402

W, H = 640, 480
MARKER = 0.06  # m
PIXELS, QUIET = 240, 60
PINHOLE = CameraIntrinsics(600.0, 600.0, 319.5, 239.5, (), "plumb_bob", W, H)
PLUMB_BOB = CameraIntrinsics(600.0, 605.0, 322.0, 236.0, (-0.28, 0.09, 0.001, -0.0008, 0.0), "plumb_bob", W, H)
FISHEYE = CameraIntrinsics(420.0, 420.0, 320.0, 240.0, (0.08, -0.03, 0.01, -0.002), "equidistant", W, H)
CAMERA_FRAME, BASE = "camera_color_optical_frame", "panda_link0"
# The camera 0.5 m above the base, 0.6 m in front of it, looking down and back at 45 degrees.
CAMERA_IN_BASE = pose_matrix((0.6, 0.0, 0.5), (0.0, 0.0, 0.0, 1.0))
CAMERA_IN_BASE[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.0, math.pi / 2]))[0] @ \
    cv2.Rodrigues(np.array([-3 * math.pi / 4, 0.0, 0.0]))[0]


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, 0.0, 0.0]))[0] @ cv2.Rodrigues(np.array([0.0, ry, 0.0]))[0] @ \
        cv2.Rodrigues(np.array([0.0, 0.0, rz]))[0]


def marker_pose(trans, tilt_x: float, tilt_y: float, turn: float) -> np.ndarray:
    """A marker facing the camera (its z towards the camera), tilted and turned (degrees)."""
    out = np.eye(4)
    out[:3, :3] = rotation(math.pi, 0, 0) @ rotation(*(math.radians(a) for a in (tilt_x, tilt_y, turn)))
    out[:3, 3] = trans
    return out


POSES = [marker_pose((0.0, 0.0, 0.4), 10, 0, 0), marker_pose((0.08, -0.05, 0.5), 25, -15, 30),
         marker_pose((-0.15, 0.09, 0.45), -20, 30, 120), marker_pose((0.12, 0.1, 0.55), 35, 10, -70)]


def render(pose: np.ndarray, intr: CameraIntrinsics, marker_id: int = 3) -> np.ndarray:
    """RGB [H, W, 3] of the marker at `pose` (camera frame) seen through `intr`, distortion included:
    the ideal pinhole image is warped from the marker's corners, then each output pixel samples it
    where the lens model says that pixel's ray lands."""
    marker = cv2.aruco.generateImageMarker(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50), marker_id,
                                           PIXELS)
    sheet = cv2.copyMakeBorder(marker, QUIET, QUIET, QUIET, QUIET, cv2.BORDER_CONSTANT, value=255)
    lo, hi = QUIET - 0.5, QUIET + PIXELS - 0.5
    source = np.float32([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    half = MARKER / 2
    corners = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    k = intr.matrix()
    cam = (pose[:3, :3] @ corners.T).T + pose[:3, 3]
    projected = (k @ (cam / cam[:, 2:]).T).T[:, :2]
    homography = cv2.getPerspectiveTransform(source, projected.astype(np.float32))
    warped = cv2.warpPerspective(sheet, homography, (W, H), flags=cv2.INTER_LINEAR, borderValue=255)
    mask = cv2.warpPerspective(np.ones_like(sheet, dtype=np.float32), homography, (W, H), flags=cv2.INTER_LINEAR)
    background = np.random.default_rng(0).integers(60, 120, (H, W)).astype(np.float32)
    ideal = (mask * warped + (1 - mask) * background).astype(np.float32)
    if intr.distortion and any(intr.distortion):
        grid = np.stack(np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64)), -1)
        pts = grid.reshape(-1, 1, 2)
        exact = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)  # the default 5 steps: px off at edges
        if intr.fisheye:
            ideal_px = cv2.fisheye.undistortPoints(pts, k, intr.coefficients(), P=k)
        else:
            ideal_px = cv2.undistortPoints(pts, k, intr.coefficients(), R=None, P=k, criteria=exact)
        maps = ideal_px.reshape(H, W, 2).astype(np.float32)
        ideal = cv2.remap(ideal, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderValue=90)
    return cv2.cvtColor(ideal.round().astype(np.uint8), cv2.COLOR_GRAY2RGB)


def core_for(intr: CameraIntrinsics, **overrides) -> ArucoNodeCore:
    params = ArucoNodeParams(marker_ids=[3], marker_size=MARKER, image_type="raw", output_frame=BASE, **overrides)
    core = ArucoNodeCore(params)
    core.on_camera_info(camera_info(intr, CAMERA_FRAME, 1.0))
    core.on_tf(tf_message([transform_stamped(BASE, CAMERA_FRAME, CAMERA_IN_BASE, 0.0)]), static=True)
    return core


@pytest.mark.parametrize("intr", [PINHOLE, PLUMB_BOB, FISHEYE], ids=["pinhole", "plumb_bob", "equidistant"])
def test_marker_positions_within_5_mm_in_the_requested_frame(intr):
    core = core_for(intr)
    errors, rot_errors = [], []
    for k, pose in enumerate(POSES):
        msg = m.image(render(pose, intr), stamp=10.0 + k, frame_id=CAMERA_FRAME)
        result = core.on_image(msg)
        assert set(result.poses) == {3}, core.status()
        out = result.poses[3]
        assert out.header.frame_id == BASE and m.stamp_to_seconds(out.header.stamp) == pytest.approx(10.0 + k)
        truth = CAMERA_IN_BASE @ pose
        p = out.pose.position
        errors.append(np.linalg.norm(np.array([p.x, p.y, p.z]) - truth[:3, 3]))
        q = out.pose.orientation
        rot_err = np.linalg.norm(cv2.Rodrigues(quat_xyzw_to_matrix((q.x, q.y, q.z, q.w)) @ truth[:3, :3].T)[0])
        rot_errors.append(math.degrees(rot_err))
        (tf,) = result.tf.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == (BASE, "aruco_marker_3")
        assert tf.transform.translation.x == pytest.approx(p.x)
    assert max(errors) < 0.005, errors
    assert max(rot_errors) < 6.0 and np.median(rot_errors) < 3.0, rot_errors
    assert core.published == {3: len(POSES)}


def test_ignoring_the_distortion_costs_accuracy():
    """The same distorted images read as an ideal pinhole are off by more: distortion is used."""
    undistorted = CameraIntrinsics(PLUMB_BOB.fx, PLUMB_BOB.fy, PLUMB_BOB.cx, PLUMB_BOB.cy, (), "plumb_bob", W, H)
    with_d, without = core_for(PLUMB_BOB), core_for(undistorted)
    pose = POSES[3]
    truth = (CAMERA_IN_BASE @ pose)[:3, 3]

    def error(core):
        p = core.on_image(m.image(render(pose, PLUMB_BOB), stamp=1.0, frame_id=CAMERA_FRAME)).poses[3].pose.position
        return np.linalg.norm(np.array([p.x, p.y, p.z]) - truth)

    assert error(with_d) < 0.005 < error(without)


def test_object_offset_compressed_images_and_the_camera_frame_default():
    # A marker on a 4 cm cube's top face: the object is 2 cm below the marker, along its -z.
    params = ArucoNodeParams(marker_ids=[3], marker_size=MARKER, marker_to_object=[0.0, 0.0, -0.02],
                             object_pose_topic="/object_pose", child_frames=["cube"])
    core = ArucoNodeCore(params)
    msg = m.compressed_image(cv2.imencode(".png", render(POSES[1], PINHOLE))[1].tobytes(), "png", 2.0, CAMERA_FRAME)
    assert core.on_image(msg).poses == {} and core.skipped["no_camera_info"] == 1
    core.on_camera_info(camera_info(PINHOLE, CAMERA_FRAME))
    result = core.on_image(msg)
    out = result.poses[3]
    assert out.header.frame_id == CAMERA_FRAME  # no output_frame: the image's own frame
    truth = POSES[1] @ pose_matrix((0.0, 0.0, -0.02))
    p = out.pose.position
    assert np.linalg.norm(np.array([p.x, p.y, p.z]) - truth[:3, 3]) < 0.005
    assert result.tf.transforms[0].child_frame_id == "cube"
    assert params.topics() == ["/object_pose"]


def test_no_tf_to_the_output_frame_is_counted_not_guessed():
    params = ArucoNodeParams(marker_ids=[3], marker_size=MARKER, image_type="raw", output_frame="world")
    core = ArucoNodeCore(params)
    core.on_camera_info(camera_info(PINHOLE, CAMERA_FRAME))
    result = core.on_image(m.image(render(POSES[0], PINHOLE), stamp=1.0, frame_id=CAMERA_FRAME))
    assert result.poses == {} and core.skipped["no_tf"] == 1 and "world" in core.last_reason


def test_camera_info_round_trip_binning_and_roi():
    msg = m.deserialize(m.serialize(camera_info(PLUMB_BOB, CAMERA_FRAME, 3.0)), CAMERA_INFO)
    assert from_camera_info(msg) == PLUMB_BOB
    msg.binning_x = msg.binning_y = 2
    half = from_camera_info(msg)
    assert (half.fx, half.cx, half.width) == pytest.approx((300.0, 161.0, 320))


@pytest.mark.parametrize("change, words", [
    (lambda msg: setattr(msg, "k", np.zeros(9)), "uncalibrated"),
    (lambda msg: setattr(msg, "distortion_model", "kannala"), "kannala"),
    (lambda msg: setattr(msg, "d", np.zeros(3)), "3"),
])
def test_camera_info_errors_say_what_is_wrong(change, words):
    msg = camera_info(PLUMB_BOB, CAMERA_FRAME)
    change(msg)
    with pytest.raises(ValueError, match=words):
        from_camera_info(msg, "CameraInfo on /cam/camera_info")


def test_camera_info_from_a_recorded_bag(tmp_path):
    from rosbags.rosbag2 import Writer

    path = tmp_path / "bag"
    with Writer(path, version=9) as writer:
        info = writer.add_connection("/camera/camera_info", CAMERA_INFO, typestore=m.TYPESTORE)
        for k in range(3):
            writer.write(info, 10**9 * (k + 1), m.serialize(camera_info(FISHEYE, CAMERA_FRAME, k + 1.0)))
        other = writer.add_connection("/joint_states", m.JOINT_STATE, typestore=m.TYPESTORE)
        writer.write(other, 10**9, m.serialize(m.joint_state(["a"], [0.0], [0.0], stamp=1.0)))
    intr, frame = camera_info_from_bag(path, "/camera/camera_info")
    assert intr == FISHEYE and frame == CAMERA_FRAME
    with pytest.raises(ValueError, match="no topic '/camera/info'"):
        camera_info_from_bag(path, "/camera/info")
    with pytest.raises(ValueError, match="JointState"):
        camera_info_from_bag(path, "/joint_states")


def test_node_parameters_are_checked():
    params, _ = aruco_node_params(["--ros-args", "-p", "marker_ids:=[1,2]", "-p", "output_frame:=world"])
    assert params.topics() == ["/aruco/marker_1/pose", "/aruco/marker_2/pose"]
    assert params.frames() == ["aruco_marker_1", "aruco_marker_2"]
    with pytest.raises(ValueError, match="object_pose_topic"):
        ArucoNodeParams(marker_ids=[1, 2], object_pose_topic="/object_pose")
    with pytest.raises(ValueError, match="pose_topics"):
        ArucoNodeParams(marker_ids=[1, 2], pose_topics=["/a"])
    with pytest.raises(ValueError, match="marker_to_object"):
        ArucoNodeParams(marker_to_object=[0.0, 0.0])
