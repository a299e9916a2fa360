"""A MuJoCo camera of the simulated arm described the ROS way: image, CameraInfo, optical frame.

`SimCamera` renders one fixed camera of a task env's scene (by default tasks.mujoco.scene's
`aruco_camera`, which also draws the ArUco markers on the cubes) at any resolution, and gives
what a ROS camera driver publishes beside its images: the intrinsics (a distortion-free pinhole
from MuJoCo's `fovy`, square pixels) and the pose of its optical frame in the task frame.

Frames: a MuJoCo camera looks along its -z axis with +y up in the image; a ROS optical frame
looks along +z with +y down (REP 103). The two differ by a half turn about x.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from typing import Any

import mujoco
import numpy as np

from sim2real.ros.camera_info import CameraIntrinsics

# Optical frame in the MuJoCo camera's frame: x kept, y and z flipped.
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])


class SimCamera:
    """One fixed camera of `env` (a tasks.mujoco task env) as a ROS camera.

    Args:
        env: the task env (its first world is rendered).
        camera: the MuJoCo camera's name.
        width, height: the image size in pixels.
    """

    def __init__(self, env: Any, camera: str, width: int, height: int) -> None:
        from tasks.mujoco.render import OffscreenRenderer
        from tasks.mujoco.scene import ARUCO_GROUP

        nominal = env.worlds[0].nominal
        self.camera_id = mujoco.mj_name2id(nominal, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            names = [mujoco.mj_id2name(nominal, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(nominal.ncam)]
            raise ValueError(f"camera {camera!r}: not in the {env.task} scene; expected one of {names}")
        if width <= 0 or height <= 0:
            raise ValueError(f"camera size {width}x{height}: expected positive width and height")
        self.env, self.name, self.width, self.height = env, camera, width, height
        # The scene's offscreen buffer is sized for the policies' small frames; this camera's own
        # GL context gets one of its size (the model copy only carries that setting).
        sized = copy.copy(nominal)
        sized.vis.global_.offwidth = max(width, sized.vis.global_.offwidth)
        sized.vis.global_.offheight = max(height, sized.vis.global_.offheight)
        self._renderer = OffscreenRenderer(sized, width, height, visible_groups=(0, 1, 2, ARUCO_GROUP))
        self.intrinsics = CameraIntrinsics.from_fovy(math.radians(float(nominal.cam_fovy[self.camera_id])),
                                                     width, height)
        self.render_ms: deque[float] = deque(maxlen=2000)

    def optical_in_task(self) -> np.ndarray:
        """The optical frame's pose [4, 4] in the task frame (the scene's world frame)."""
        world = self.env.worlds[0]
        pose = np.eye(4)
        pose[:3, :3] = np.asarray(world.data.cam_xmat[self.camera_id], dtype=np.float64).reshape(3, 3)
        pose[:3, 3] = world.data.cam_xpos[self.camera_id]
        return pose @ MUJOCO_TO_OPTICAL

    def render(self) -> np.ndarray:
        """An RGB frame uint8 [height, width, 3]; its time is kept in `render_ms`."""
        world = self.env.worlds[0]
        start = time.perf_counter()
        frame = self._renderer.render(world.model, world.data, self.camera_id)
        self.render_ms.append((time.perf_counter() - start) * 1e3)
        return frame

    def close(self) -> None:
        self._renderer.close()
