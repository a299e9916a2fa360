"""robot_bridge.perception: ArUco poses from synthesised images, image decoding, crop/resize."""

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from robot_bridge.perception import ArucoPoseEstimator, CameraIntrinsics  # noqa: E402
from sim2real.ros.images import crop_resize, decode_image  # noqa: E402

W, H = 640, 480
CAMERA = CameraIntrinsics(fx=600.0, fy=600.0, cx=319.5, cy=239.5)
MARKER = 0.06  # m
PIXELS, QUIET = 240, 60  # marker image side and its white margin, px


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, 0.0, 0.0]))[0] @ cv2.Rodrigues(np.array([0.0, ry, 0.0]))[0] @ \
        cv2.Rodrigues(np.array([0.0, 0.0, rz]))[0]


def pose(rot: np.ndarray, trans) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, trans
    return t


# Marker 4 cm right, 2 cm up, 45 cm ahead, tilted away by 25 and 15 degrees and turned 30: facing the camera.
MARKER_IN_CAMERA = pose(rotation(math.pi, 0, 0) @ rotation(math.radians(25), math.radians(-15), math.radians(30)),
                        (0.04, -0.02, 0.45))


def render(marker_pose: np.ndarray, marker_id: int = 7, dictionary: int = cv2.aruco.DICT_4X4_50) -> np.ndarray:
    """An RGB image of the marker at `marker_pose` (camera frame) on a textured background."""
    marker = cv2.aruco.generateImageMarker(cv2.aruco.getPredefinedDictionary(dictionary), marker_id, PIXELS)
    sheet = cv2.copyMakeBorder(marker, QUIET, QUIET, QUIET, QUIET, cv2.BORDER_CONSTANT, value=255)
    # Outer corners of the black square in pixel-centre coordinates, and where they project.
    lo, hi = QUIET - 0.5, QUIET + PIXELS - 0.5
    source = np.float32([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    half = MARKER / 2
    corners = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    rvec, _ = cv2.Rodrigues(marker_pose[:3, :3])
    projected, _ = cv2.projectPoints(corners, rvec, marker_pose[:3, 3], CAMERA.matrix(), None)
    homography = cv2.getPerspectiveTransform(source, projected.reshape(4, 2).astype(np.float32))
    warped = cv2.warpPerspective(sheet, homography, (W, H), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(sheet, dtype=np.float32), homography, (W, H), flags=cv2.INTER_LINEAR)
    background = np.random.default_rng(0).integers(60, 120, (H, W)).astype(np.float32)
    gray = (mask * warped + (1 - mask) * background).round().astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(np.linalg.norm(cv2.Rodrigues(a @ b.T)[0]))


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_marker_pose_in_the_camera_frame():
    estimator = ArucoPoseEstimator(CAMERA, MARKER, "DICT_4X4_50", marker_id=7)
    position, quat = estimator.estimate(render(MARKER_IN_CAMERA))
    assert np.linalg.norm(position - MARKER_IN_CAMERA[:3, 3]) < 0.003
    assert quat.shape == (4,) and abs(np.linalg.norm(quat) - 1) < 1e-9
    assert angle_between(quat_xyzw_to_matrix(quat), MARKER_IN_CAMERA[:3, :3]) < 2.0


def test_apriltag_corner_refinement_is_more_accurate():
    estimator = ArucoPoseEstimator(CAMERA, MARKER, marker_id=7, corner_refinement="apriltag")
    position, quat = estimator.estimate(render(MARKER_IN_CAMERA))
    assert np.linalg.norm(position - MARKER_IN_CAMERA[:3, 3]) < 0.001
    assert angle_between(quat_xyzw_to_matrix(quat), MARKER_IN_CAMERA[:3, :3]) < 0.5


def test_extrinsic_and_object_offset_give_the_object_in_the_base_frame():
    camera_to_base = pose(rotation(-2.2, 0.1, 1.5), (0.9, 0.05, 0.55))
    marker_to_object = pose(np.eye(3), (0.0, 0.0, -0.02))  # marker on the top face of a 4 cm cube
    estimator = ArucoPoseEstimator.from_params({
        "fx": CAMERA.fx, "fy": CAMERA.fy, "cx": CAMERA.cx, "cy": CAMERA.cy, "distortion": [0.0] * 5,
        "marker_size": MARKER, "dictionary": "DICT_4X4_50", "marker_id": 7,
        "camera_to_base": camera_to_base.ravel().tolist(), "marker_to_object": marker_to_object.ravel().tolist()})
    expected = camera_to_base @ MARKER_IN_CAMERA @ marker_to_object
    position, quat = estimator.estimate(render(MARKER_IN_CAMERA))
    assert np.linalg.norm(position - expected[:3, 3]) < 0.003
    assert angle_between(quat_xyzw_to_matrix(quat), expected[:3, :3]) < 2.0


def test_no_marker_or_another_marker_gives_none():
    blank = np.full((H, W, 3), 90, np.uint8)
    assert ArucoPoseEstimator(CAMERA, MARKER).estimate(blank) is None
    assert ArucoPoseEstimator(CAMERA, MARKER, marker_id=3).estimate(render(MARKER_IN_CAMERA)) is None
    assert ArucoPoseEstimator(CAMERA, MARKER).estimate(render(MARKER_IN_CAMERA)) is not None  # any id


def test_bad_estimator_configs_are_clear_errors():
    with pytest.raises(ValueError, match="dictionary 'DICT_9X9'"):
        ArucoPoseEstimator(CAMERA, MARKER, "DICT_9X9")
    with pytest.raises(ValueError, match="marker_size"):
        ArucoPoseEstimator(CAMERA, 0.0)
    with pytest.raises(ValueError, match="corner_refinement"):
        ArucoPoseEstimator(CAMERA, MARKER, corner_refinement="magic")
    with pytest.raises(ValueError, match="not a rotation"):
        ArucoPoseEstimator(CAMERA, MARKER, camera_to_base=np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="missing parameters"):
        ArucoPoseEstimator.from_params({"fx": 1.0, "marker_size": 0.05})
    with pytest.raises(ValueError, match="16 values"):
        ArucoPoseEstimator.from_params({"fx": 1, "fy": 1, "cx": 1, "cy": 1, "marker_size": 0.05,
                                        "camera_to_base": [1.0] * 9})


# ---- decoding ----------------------------------------------------------------------------------
FRAME = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_decode_raw_encodings():
    assert np.array_equal(decode_image(FRAME.tobytes(), "rgb8", 48, 64), FRAME)
    assert np.array_equal(decode_image(FRAME[..., ::-1].tobytes(), "bgr8", 48, 64), FRAME)
    mono = FRAME[..., 0]
    decoded = decode_image(mono.tobytes(), "mono8", 48, 64)
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    assert all(np.array_equal(decoded[..., c], mono) for c in range(3))
    padded = np.concatenate([FRAME.reshape(48, -1), np.zeros((48, 8), np.uint8)], axis=1)  # step > width x 3
    assert np.array_equal(decode_image(padded.ravel(), "rgb8", 48, 64, step=64 * 3 + 8), FRAME)


def test_decode_compressed_formats():
    ok, png = cv2.imencode(".png", cv2.cvtColor(FRAME, cv2.COLOR_RGB2BGR))
    assert ok and np.array_equal(decode_image(png.tobytes(), "png"), FRAME)
    smooth = cv2.GaussianBlur(FRAME, (9, 9), 3)  # JPEG is lossy: compare a smooth image approximately
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = decode_image(jpeg, "rgb8; jpeg compressed bgr8")
    assert decoded.shape == (48, 64, 3) and np.abs(decoded.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize("args,match", [
    ((b"\x00" * 10, "yuv422", 2, 2), "not supported"),
    ((b"\x00" * 10, "rgb8", 2, 2), "expected 12 bytes"),
    ((b"\x00" * 12, "rgb8", 0, 2), "height, width > 0"),
    ((b"not a jpeg", "jpeg"), "could not decode"),
])
def test_bad_images_are_clear_errors(args, match):
    with pytest.raises(ValueError, match=match):
        decode_image(*args)


# ---- crop and resize ---------------------------------------------------------------------------
def test_crop_resize_gives_the_contract_layout():
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, 80:560] = (10, 20, 30)  # the central square
    out = crop_resize(frame, 64, crop=(80, 0, 480, 480))
    assert out.shape == (3, 64, 64) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out[:, 5, 5], [10, 20, 30]) and (out == out[:, :1, :1]).all()
    assert crop_resize(frame, (32, 48)).shape == (3, 32, 48)
    assert crop_resize(frame[..., 0], 16).shape == (3, 16, 16)  # mono frames become 3 channels
    assert crop_resize(np.zeros((8, 8, 3), np.uint8), 64).shape == (3, 64, 64)  # enlarging works too


def test_crop_resize_rejects_bad_input():
    with pytest.raises(ValueError, match="does not fit"):
        crop_resize(np.zeros((H, W, 3), np.uint8), 64, crop=(600, 0, 100, 100))
    with pytest.raises(ValueError, match="uint8"):
        crop_resize(np.zeros((H, W, 3), np.float32), 64)
