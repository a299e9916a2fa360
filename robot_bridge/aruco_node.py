"""`sim2real-aruco-node`: object poses from a camera's ArUco markers, published the ROS way.

    sim2real-aruco-node --ros-args -p image_topic:=/camera/image_raw/compressed \
        -p camera_info_topic:=/camera/camera_info -p marker_ids:=[0] -p marker_size:=0.03 \
        -p output_frame:=panda_link0 -p object_pose_topic:=/object_pose \
        -p marker_to_object:=[0.0,0.0,-0.02]

Subscribes to the image (CompressedImage or Image, sensor-data QoS), its CameraInfo, `/tf` and
`/tf_static`; publishes one `geometry_msgs/PoseStamped` per configured marker id (in
`output_frame`, stamped with the image's stamp) and the matching `/tf` (output frame ->
`aruco_marker_<id>`). Only the newest image is processed: when detection is slower than the
camera, stale frames are dropped rather than queued. `~/status` (std_msgs/String, JSON) reports
images seen, poses published per id, frames skipped and why, and the detection time.
`ArucoNodeCore` (robot_bridge.aruco_core) holds the logic without DDS.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from robot_bridge.aruco_core import NODE_NAME, ArucoNodeCore, ArucoNodeParams
from robot_bridge.ros_params import ParamError, RosArgs, parse_ros_args, to_params
from robot_bridge.transport import QoS, Transport, TransportError, follow_tf, node_transport
from sim2real.ros import messages as m
from sim2real.ros.camera_info import CAMERA_INFO
from sim2real.ros.frames import TF_MESSAGE

log = logging.getLogger(NODE_NAME)


def aruco_node_params(argv: Sequence[str]) -> tuple[ArucoNodeParams, RosArgs]:
    ros = parse_ros_args(argv, NODE_NAME)
    return to_params(ArucoNodeParams, ros), ros


def run_aruco_node(params: ArucoNodeParams, ros: RosArgs | None = None, stop: threading.Event | None = None,
                   transport: Transport | None = None) -> dict[str, Any]:
    """Run until `stop`, `duration_s` or a signal; returns the final status."""
    ros = ros or RosArgs(NODE_NAME)
    stop = stop or threading.Event()
    core = ArucoNodeCore(params)
    own = transport is None
    if transport is None:
        transport = node_transport(params, ros)
    topic = ros.topic
    try:
        if "parameters" in transport.capabilities:  # rclpy: `ros2 param list/get` show them, read-only
            from robot_bridge.node_parameters import declare_read_only

            declare_read_only(transport.node, params)  # type: ignore[attr-defined]
        poses = {i: transport.publisher(topic(name), m.POSE_STAMPED, QoS.SENSOR_DATA)
                 for i, name in zip(params.marker_ids, params.topics())}
        tf_pub = transport.publisher(topic(params.tf_topic), TF_MESSAGE, QoS(reliable=True, depth=100)) \
            if params.publish_tf and params.tf_topic else None
        status_pub = transport.publisher(topic("~/status"), m.STRING)
        latest: list[Any] = []

        def on_info(msg: Any) -> None:
            try:
                core.on_camera_info(msg)
            except ValueError as exc:  # an uncalibrated camera: say so, keep waiting for a good one
                core.last_reason = str(exc)

        for skipped in follow_tf(transport, [(topic(params.tf_static_topic), True), (topic(params.tf_topic), False)],
                                 lambda msg, static: core.on_tf(msg, static=static)):
            log.warning("not following %s: poses stay in the image's frame unless output_frame is it", skipped)
        transport.subscribe(topic(params.camera_info_topic), CAMERA_INFO, on_info)
        kind = m.COMPRESSED_IMAGE if params.image_type == "compressed" else m.IMAGE
        transport.subscribe(topic(params.image_topic), kind, lambda msg: latest.append(msg), QoS.SENSOR_DATA)
        start = time.monotonic()
        next_status = start
        while not stop.is_set() and (params.duration_s <= 0 or time.monotonic() - start < params.duration_s):
            transport.spin_once(0.02)
            if latest:
                msg = latest[-1]
                latest.clear()
                result = core.on_image(msg)
                for marker_id, pose in result.poses.items():
                    poses[marker_id].publish(pose)
                if tf_pub is not None and result.tf is not None:
                    tf_pub.publish(result.tf)
            if time.monotonic() >= next_status:
                status_pub.publish(m.string_msg(json.dumps(core.status())))
                next_status = time.monotonic() + params.status_period_s
        status = core.status()
        status_pub.publish(m.string_msg(json.dumps(status)))
        return status
    finally:
        if own:
            transport.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`sim2real-aruco-node [--params-file FILE] [--ros-args -p name:=value ...]`; prints the final
    status as one JSON line."""
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s: %(message)s")
    try:
        params, ros = aruco_node_params(sys.argv[1:] if argv is None else argv)
    except (ParamError, ValueError) as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        status = run_aruco_node(params, ros, stop)
    except (ValueError, TransportError) as exc:
        print(f"{ros.node_name}: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(status), flush=True)


if __name__ == "__main__":
    main()
