"""The ArUco perception node without DDS: images and CameraInfo in, marker poses out.

`ArucoNodeCore` takes the camera's calibration from `sensor_msgs/CameraInfo` (never from
hand-copied parameters), finds the configured markers in each image (robot_bridge.perception),
moves their poses from the image's frame (header.frame_id, the camera's optical frame) into
`output_frame` through tf (sim2real.ros.frames: /tf and /tf_static as the node receives them)
and returns one `geometry_msgs/PoseStamped` per marker seen plus the matching `/tf` message.
`ArucoNodeParams` are the node's ROS parameters; robot_bridge.aruco_node wires both to a transport.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_bridge.perception import ArucoPoseEstimator
from sim2real.ros import messages as m
from sim2real.ros.camera_info import CameraIntrinsics, from_camera_info
from sim2real.robot.rotations import matrix_to_quat
from sim2real.ros.frames import FrameGraph, base_in_task_matrix, tf_message, transform_stamped
from sim2real.ros.images import decode_image_msg

NODE_NAME = "sim2real_aruco_node"


@dataclass
class ArucoNodeParams:
    """ROS parameters of the ArUco node.

    `pose_topics` gives one PoseStamped topic per id of `marker_ids` (default
    `/aruco/marker_<id>/pose`); `object_pose_topic` is the shorthand for a single marker (the
    policy node's object pose input). `marker_to_object` is the object's pose in the marker's
    frame (x right, y up, z out of the face), [x, y, z] or [x, y, z, qx, qy, qz, qw]: a marker on
    a cube's top face has its cube's centre at [0, 0, -half side]. `output_frame` "" keeps poses
    in the camera's optical frame.
    """

    transport: str = "auto"
    domain_id: int = -1  # -1: ROS_DOMAIN_ID from the environment
    allow_network: bool = False
    image_topic: str = "camera/image_raw/compressed"
    image_type: str = "compressed"  # compressed (CompressedImage) | raw (Image)
    camera_info_topic: str = "camera/camera_info"
    marker_ids: list[int] = field(default_factory=lambda: [0])
    marker_size: float = 0.03  # side of the marker's black square, m
    dictionary: str = "DICT_4X4_50"
    corner_refinement: str = "subpix"  # robot_bridge.perception.CORNER_REFINEMENT
    output_frame: str = ""
    pose_topics: list[str] = field(default_factory=list)
    object_pose_topic: str = ""
    child_frames: list[str] = field(default_factory=list)  # tf child frame per id; default aruco_marker_<id>
    marker_to_object: list[float] = field(default_factory=list)
    publish_tf: bool = True
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    status_period_s: float = 1.0
    duration_s: float = 0.0  # stop after this long; 0: until stopped

    def __post_init__(self) -> None:
        if self.image_type not in ("compressed", "raw"):
            raise ValueError(f"parameter image_type={self.image_type!r}: expected compressed or raw")
        if not self.marker_ids or len(set(self.marker_ids)) != len(self.marker_ids) or min(self.marker_ids) < 0:
            raise ValueError(f"parameter marker_ids={self.marker_ids}: expected distinct ids >= 0")
        if not self.camera_info_topic:
            raise ValueError("parameter camera_info_topic: required (the camera's sensor_msgs/CameraInfo)")
        if self.object_pose_topic and (self.pose_topics or len(self.marker_ids) != 1):
            raise ValueError(f"parameter object_pose_topic={self.object_pose_topic!r}: for a single marker id "
                             f"without pose_topics; got marker_ids={self.marker_ids}, pose_topics={self.pose_topics}")
        for name in ("pose_topics", "child_frames"):
            values = getattr(self, name)
            if values and len(values) != len(self.marker_ids):
                raise ValueError(f"parameter {name}={values}: expected one per marker id ({len(self.marker_ids)})")
        if self.marker_to_object:
            base_in_task_matrix(self.marker_to_object, "parameter marker_to_object")

    def topics(self) -> list[str]:
        """The pose topic of each marker id."""
        if self.object_pose_topic:
            return [self.object_pose_topic]
        return list(self.pose_topics) or [f"/aruco/marker_{i}/pose" for i in self.marker_ids]

    def frames(self) -> list[str]:
        """The tf child frame of each marker id."""
        return list(self.child_frames) or [f"aruco_marker_{i}" for i in self.marker_ids]


@dataclass
class Detection:
    """What one image gave: a PoseStamped per marker seen (by id), and their /tf message (or None)."""

    poses: dict[int, Any]
    tf: Any | None


class ArucoNodeCore:
    """Camera calibration, tf and images in; marker poses in `output_frame` out.

    Args:
        params: the node's parameters.
    """

    def __init__(self, params: ArucoNodeParams) -> None:
        self.params = params
        self.graph = FrameGraph()
        self.intrinsics: CameraIntrinsics | None = None
        self._offset = base_in_task_matrix(params.marker_to_object, "marker_to_object") if params.marker_to_object \
            else None
        self._estimator: ArucoPoseEstimator | None = None
        self._frames = dict(zip(params.marker_ids, params.frames()))
        self.images = 0
        self.published = {i: 0 for i in params.marker_ids}
        self.skipped: dict[str, int] = {"no_camera_info": 0, "no_tf": 0, "undecodable": 0}
        self.last_reason = ""
        self.detect_ms: deque[float] = deque(maxlen=1000)

    def on_camera_info(self, msg: Any) -> None:
        """Take the calibration (again, when it changed)."""
        intrinsics = from_camera_info(msg, f"CameraInfo on {self.params.camera_info_topic}")
        if intrinsics == self.intrinsics:
            return
        self.intrinsics = intrinsics
        if self._estimator is None:
            self._estimator = ArucoPoseEstimator(intrinsics, self.params.marker_size, self.params.dictionary,
                                                 marker_to_object=self._offset,
                                                 corner_refinement=self.params.corner_refinement)
        else:
            self._estimator.set_intrinsics(intrinsics)

    def on_tf(self, msg: Any, static: bool = False) -> None:
        self.graph.add_message(msg, static)

    def _skip(self, why: str, reason: str) -> Detection:
        self.skipped[why] += 1
        self.last_reason = reason
        return Detection({}, None)

    def on_image(self, msg: Any) -> Detection:
        """Detect the markers in an Image or CompressedImage; poses are stamped with the image's stamp."""
        self.images += 1
        if self._estimator is None or self.intrinsics is None:
            return self._skip("no_camera_info", f"no CameraInfo yet on {self.params.camera_info_topic}")
        try:
            frame = decode_image_msg(msg)
        except ValueError as exc:
            return self._skip("undecodable", str(exc))
        start = time.perf_counter()
        found = self._estimator.pose_matrices(frame, self.params.marker_ids)
        self.detect_ms.append((time.perf_counter() - start) * 1e3)
        return self.place(found, str(msg.header.frame_id), msg.header.stamp)

    def place(self, in_camera: dict[int, np.ndarray], camera_frame: str, stamp: Any) -> Detection:
        """Move poses in `camera_frame` into output_frame (tf at `stamp`) and build the messages."""
        if not in_camera:
            return Detection({}, None)
        output = self.params.output_frame.lstrip("/") or camera_frame
        seconds = m.stamp_to_seconds(stamp)
        to_output = self.graph.lookup(output, camera_frame, seconds)
        if to_output is None:
            to_output = self.graph.lookup(output, camera_frame)  # a camera fixed by /tf_static: any time
        if to_output is None:
            return self._skip("no_tf", f"no tf from the image's frame {camera_frame!r} to output_frame "
                                       f"{output!r} (known frames: {sorted(self.graph.frames)})")
        poses, transforms = {}, []
        for marker_id, pose in in_camera.items():
            pose = to_output @ pose
            w, x, y, z = matrix_to_quat(pose[:3, :3])
            poses[marker_id] = m.pose_stamped(output, pose[:3, 3], (x, y, z, w), stamp=stamp)
            transforms.append(transform_stamped(output, self._frames[marker_id], pose, stamp))
            self.published[marker_id] += 1
        return Detection(poses, tf_message(transforms) if self.params.publish_tf else None)

    def status(self) -> dict[str, Any]:
        p50 = float(np.median(self.detect_ms)) if self.detect_ms else math.nan
        return {"node": NODE_NAME, "images": self.images, "published": {str(k): v for k, v in self.published.items()},
                "skipped": dict(self.skipped), "last_reason": self.last_reason,
                "camera_info": self.intrinsics is not None,
                "detect_p50_ms": None if math.isnan(p50) else round(p50, 2)}
