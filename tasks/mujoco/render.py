"""Offscreen rendering of many env copies with one OpenGL context.

Every env has its own MjModel (its own object sizes and camera pose), but the copies share
meshes and textures, so one GL context and one MjrContext (uploaded from the first model)
serve them all: each frame updates the scene from that env's model and data.

The GL backend is named by `MUJOCO_GL` (tasks.mujoco sets "egl" unless the caller chose
one) and looked up when a renderer is made, not when mujoco was first imported, so the
import order of mujoco and tasks.mujoco does not matter. Without a GPU, EGL runs on Mesa's
software rasteriser.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any

import mujoco
import numpy as np


def _gl_context(width: int, height: int) -> Any:
    """An OpenGL context of the backend MUJOCO_GL names (egl, osmesa; anything else: mujoco's choice)."""
    backend = os.environ.get("MUJOCO_GL", "").lower()
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        GLContext = mujoco.GLContext
    return GLContext(width, height)


def _free_gl(gl: Any, con: mujoco.MjrContext) -> None:
    gl.make_current()
    con.free()
    gl.free()


class OffscreenRenderer:
    """Renders fixed cameras of a list of (model, data) pairs at one resolution.

    Args:
        model: any of the env models (meshes, textures and the offscreen buffer size come from it).
        width, height: image size in pixels (at most the model's offscreen buffer).
        visible_groups: the geom groups drawn (MuJoCo's default shows 0-2; goal markers the
            policy must not see live in a group only the viewer shows).
    """

    def __init__(self, model: mujoco.MjModel, width: int, height: int,
                 visible_groups: tuple[int, ...] = (0, 1, 2)) -> None:
        buffer = (model.vis.global_.offwidth, model.vis.global_.offheight)
        if width > buffer[0] or height > buffer[1]:
            raise ValueError(f"render size {width}x{height} exceeds the model's offscreen buffer {buffer}")
        try:
            self._gl = _gl_context(width, height)
            self._gl.make_current()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        except Exception as e:  # the GL stack raises many types (ImportError, EGLError, FatalError)
            raise RuntimeError(f"MuJoCo could not render offscreen with MUJOCO_GL="
                               f"{os.environ.get('MUJOCO_GL', '<unset>')!r} ({type(e).__name__}: {e}). "
                               f"Headless machines need EGL (libEGL + Mesa) or OSMesa (MUJOCO_GL=osmesa); "
                               f"PyOpenGL must not have been imported for another platform "
                               f"(PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM', '<unset>')!r}).") from e
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._option = mujoco.MjvOption()
        for g in range(len(self._option.geomgroup)):
            self._option.geomgroup[g] = int(g in visible_groups)
        # Free the GL objects at close() or, failing that, at interpreter exit before mujoco.egl
        # terminates its display (atexit runs the later registration first); garbage collection
        # during shutdown would find EGL gone and print errors.
        self._free = weakref.finalize(self, _free_gl, self._gl, self._con)
        self._free.atexit = False
        atexit.register(self._free)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.zeros((height, width, 3), dtype=np.uint8)

    def render(self, model: mujoco.MjModel, data: mujoco.MjData, camera: int) -> np.ndarray:
        """One frame from fixed camera `camera`: uint8 [H, W, 3] (row 0 at the top)."""
        self._gl.make_current()
        self._camera.fixedcamid = camera
        if not self._free.alive:
            raise RuntimeError("this renderer was closed")
        mujoco.mjv_updateScene(model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL,
                               self._scene)
        mujoco.mjr_render(self._viewport, self._scene, self._con)
        mujoco.mjr_readPixels(self._pixels, None, self._viewport, self._con)
        return np.flipud(self._pixels).copy()

    def close(self) -> None:
        """Free the GL resources now."""
        self._free()
        atexit.unregister(self._free)
