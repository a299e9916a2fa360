"""Camera intrinsics the ROS way: `sensor_msgs/CameraInfo` in and out, live or from a bag.

A ROS camera driver publishes its calibration beside its images, on `<camera>/camera_info`
(the image's header.frame_id is the camera's optical frame: x right, y down, z forward). This
module turns that message into `CameraIntrinsics` (K, distortion model and coefficients, image
size), builds the message from intrinsics (the simulated arm's camera), and reads the first
recorded CameraInfo out of a rosbag2 recording.

Distortion models (camera_calibration_parsers' names): `plumb_bob` and `rational_polynomial`
are OpenCV's standard model (k1, k2, p1, p2, k3[, k4, k5, k6]); `equidistant` is OpenCV's
fisheye model (k1..k4). An empty distortion model with no coefficients means none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.ros import messages as m

CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
# Model name -> allowed numbers of coefficients.
DISTORTION_MODELS = {"plumb_bob": (0, 4, 5), "rational_polynomial": (0, 4, 5, 8), "equidistant": (0, 4)}


@dataclass(frozen=True)
class CameraIntrinsics:
    """A calibrated camera: focal lengths and principal point in pixels, the distortion model
    and its coefficients (OpenCV order; empty for none), and the image size (0: unknown).

    Args:
        fx, fy, cx, cy: K's entries.
        distortion: k1, k2, p1, p2[, k3[, k4, k5, k6]] (plumb_bob, rational_polynomial) or
            k1, k2, k3, k4 (equidistant).
        distortion_model: one of DISTORTION_MODELS.
        width, height: the calibrated image size in pixels (0: not known).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"distortion_model {self.distortion_model!r}: expected one of "
                             f"{', '.join(DISTORTION_MODELS)}")
        if len(self.distortion) not in DISTORTION_MODELS[self.distortion_model]:
            raise ValueError(f"distortion: the {self.distortion_model} model takes "
                             f"{' or '.join(map(str, DISTORTION_MODELS[self.distortion_model]))} coefficients, "
                             f"got {len(self.distortion)}")
        values = (self.fx, self.fy, self.cx, self.cy, *self.distortion)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"camera intrinsics: expected finite values and fx, fy > 0, got fx={self.fx}, "
                             f"fy={self.fy}, cx={self.cx}, cy={self.cy}, distortion={list(self.distortion)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CameraIntrinsics:
        """From parameters fx, fy, cx, cy and optional distortion, distortion_model, width, height."""
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in params]
        if missing:
            raise ValueError(f"camera intrinsics: missing parameters {missing} (expected fx, fy, cx, cy, distortion)")
        return cls(float(params["fx"]), float(params["fy"]), float(params["cx"]), float(params["cy"]),
                   tuple(float(d) for d in params.get("distortion", ())),
                   str(params.get("distortion_model", "plumb_bob")), int(params.get("width", 0)),
                   int(params.get("height", 0)))

    @classmethod
    def from_fovy(cls, fovy_rad: float, width: int, height: int) -> CameraIntrinsics:
        """An ideal pinhole with vertical field of view `fovy_rad` and square pixels (a simulated
        camera: MuJoCo's `fovy`), principal point at the image centre."""
        f = 0.5 * height / math.tan(0.5 * fovy_rad)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, (), "plumb_bob", width, height)

    @property
    def fisheye(self) -> bool:
        return self.distortion_model == "equidistant"

    def matrix(self) -> np.ndarray:
        """K [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def coefficients(self) -> np.ndarray:
        """The distortion coefficients as OpenCV takes them (float64 [N])."""
        return np.asarray(self.distortion, dtype=np.float64)


def from_camera_info(msg: Any, where: str = "CameraInfo") -> CameraIntrinsics:
    """`CameraIntrinsics` of a sensor_msgs/CameraInfo.

    Binning and a region of interest are applied (K scaled and shifted to the published image),
    as image_geometry's PinholeCameraModel does.

    Raises:
        ValueError: naming `where`, for an uncalibrated camera (K all zeros), an unknown
            distortion model or a wrong number of coefficients.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ValueError(f"{where}: k has {k.size} values, expected 9 (row-major 3x3)")
    if not np.any(k):
        raise ValueError(f"{where}: k is all zeros: the camera is uncalibrated (calibrate it, e.g. with "
                         f"camera_calibration, and let its driver publish the result)")
    if k[0] <= 0 or k[4] <= 0:
        raise ValueError(f"{where}: k = {k.tolist()}: expected fx = k[0] > 0 and fy = k[4] > 0")
    d = tuple(float(v) for v in np.asarray(msg.d, dtype=np.float64).reshape(-1))
    model = str(msg.distortion_model) or "plumb_bob"
    if model not in DISTORTION_MODELS:
        raise ValueError(f"{where}: distortion_model {model!r} is not supported; expected one of "
                         f"{', '.join(DISTORTION_MODELS)}")
    if model in ("plumb_bob", "rational_polynomial") and len(d) > 5 and not any(d[5:]):
        d = d[:5]  # rational_polynomial's k4..k6 at zero are plumb_bob's five
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    cx, cy = (cx - float(roi.x_offset)) / bx, (cy - float(roi.y_offset)) / by
    width, height = int(msg.width), int(msg.height)
    if roi.width and roi.height:
        width, height = int(roi.width), int(roi.height)
    try:
        return CameraIntrinsics(float(fx / bx), float(fy / by), float(cx), float(cy), d, model, width // bx,
                                height // by)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def camera_info(intrinsics: CameraIntrinsics, frame_id: str, stamp: float | Any | None = None) -> Any:
    """A sensor_msgs/CameraInfo of `intrinsics` for images in `frame_id` (no rectification:
    R = I, P = [K | 0])."""
    t = m.TYPESTORE.types
    k = intrinsics.matrix()
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return t[CAMERA_INFO](
        header=m.header(frame_id, stamp), height=int(intrinsics.height), width=int(intrinsics.width),
        distortion_model=intrinsics.distortion_model, d=intrinsics.coefficients(), k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def camera_info_from_bag(path: str | Path, topic: str) -> tuple[CameraIntrinsics, str]:
    """(intrinsics, optical frame id) of the first CameraInfo recorded on `topic` in the rosbag2
    recording at `path` (a calibration is fixed for a recording, so the first one stands).

    Raises:
        ValueError: the bag has no such topic, it is not CameraInfo, or nothing was recorded on it.
    """
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = sorted({c.topic for c in reader.connections})
            raise ValueError(f"{path}: no topic {topic!r}; recorded topics: {', '.join(topics)}")
        if connections[0].msgtype != CAMERA_INFO:
            raise ValueError(f"{path}: topic {topic!r} holds {connections[0].msgtype}, expected {CAMERA_INFO}")
        for connection, _, raw in reader.messages(connections=connections):
            msg = m.TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            return from_camera_info(msg, f"{path} {topic}"), str(msg.header.frame_id)
    raise ValueError(f"{path}: topic {topic!r} has no messages")


def intrinsics_summary(intr: CameraIntrinsics) -> dict[str, Any]:
    """A JSON-able description (status lines, reports)."""
    return {"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy, "distortion_model": intr.distortion_model,
            "distortion": list(intr.distortion), "width": intr.width, "height": intr.height}
