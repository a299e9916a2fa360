"""MJCF pieces of the table-top scene and their composition per task.

Each piece is its own `mjcf.RootElement` (the robot, the arena with table, floor, lights and
cameras, a cube, the cabinet of tasks.mujoco.cabinet), attached to the arena the way
dm_control's manipulation suite composes its scenes. All dimensions come from tasks.layout, in
ManiSkill's table-top frame (table surface at z = 0, the Panda's base at ROBOT_BASE_POS facing +x;
other arms where tasks.layout.ARM_SETUPS places them).
"""

from __future__ import annotations

import functools
import math

import mujoco
import numpy as np
from dm_control import mjcf

from tasks import layout
from tasks.mujoco.cabinet import build_cabinet
from tasks.mujoco.contact import set_geom_defaults
from tasks.mujoco.robot import build_arm

# Physics at 500 Hz (ManiSkill: PhysX at 100 Hz). MuJoCo's contact time constant must span
# at least two steps, and the 5 ms one that keeps grasps within 0.5 mm (tasks.mujoco.contact)
# needs dt <= 2.5 ms; at 2.5 and 5 ms (with 10 ms contacts) the experts lost 3-7 % more
# episodes. 25 steps per 50 ms control period.
TIMESTEP = 0.002
CUBE_DENSITY = 1000.0  # SAPIEN's default density: a 4 cm cube weighs 64 g

# ManiSkill's table: a 1.209 x 2.418 m box (rotated), top at z = 0, centred at x = -0.12.
TABLE_HALF = (1.209 / 2, 2.418 / 2, 0.9196429 / 2)
TABLE_CENTER_X = -0.12

# Geom groups: 0 collision+visual, 3 markers seen by the viewer camera only, 4 frames (sites),
# 5 the ArUco markers on the cubes (drawn only by the ArUco camera: the policies' camera and the
# videos see the scenes they always saw).
VIEWER_ONLY_GROUP = 3
ARUCO_GROUP = 5

OBS_CAMERA = "base_camera"
RENDER_CAMERA = "render_camera"
ARUCO_CAMERA = "aruco_camera"
GOAL_BODY = "goal_marker"
CUBE_NAMES = {"push_cube": ("cube",), "pick_cube": ("cube",), "stack_cube": ("cubeA", "cubeB"), "open_drawer": ()}
CUBE_RGBA = {"cube": (1.0, 0.0, 0.0, 1.0), "cubeA": (1.0, 0.0, 0.0, 1.0), "cubeB": (0.0, 1.0, 0.0, 1.0)}
PUSH_CUBE_RGBA = (12 / 255, 42 / 255, 160 / 255, 1.0)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at `eye` looking at `target`, world z up.

    A MuJoCo camera looks along its -z axis with +y up in the image.
    """
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    if np.linalg.norm(right) < 1e-9:  # looking straight down or up: any horizontal right axis
        right = np.array([0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    mat = np.stack([right, up, -forward], axis=1)  # columns: camera x, y, z in world
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.ravel())
    return quat


def build_arena(setup: layout.ArmSetup = layout.ARM_SETUPS["panda"]) -> mjcf.RootElement:
    """Table, floor, lights, the observation and viewer cameras (placed for the arm), and the physics options."""
    arena = mjcf.RootElement(model="tabletop")
    arena.compiler.angle = "radian"
    # implicitfast: the drives' damping is integrated implicitly (stable on light joints at this dt).
    arena.option.set_attributes(timestep=TIMESTEP, integrator="implicitfast", cone="elliptic")
    getattr(arena.visual, "global").set_attributes(offwidth=layout.RENDER_SIZE, offheight=layout.RENDER_SIZE)
    # No multisampling: resolving it dominates software (llvmpipe) rendering of small frames.
    arena.visual.quality.offsamples = 0
    arena.visual.headlight.set_attributes(ambient=(0.3, 0.3, 0.3), diffuse=(0.5, 0.5, 0.5), specular=(0, 0, 0))
    set_geom_defaults(arena)
    arena.asset.add("texture", name="floor", type="2d", builtin="checker", rgb1=(0.35, 0.35, 0.38),
                    rgb2=(0.3, 0.3, 0.33), width=256, height=256)
    floor = arena.asset.add("material", name="floor", texture="floor", texrepeat=(20, 20), texuniform=True)
    arena.worldbody.add("geom", name="floor", type="plane", size=(10, 10, 0.1), material=floor,
                        pos=(0, 0, -2 * TABLE_HALF[2]))
    arena.worldbody.add("geom", name="table", type="box", size=TABLE_HALF, pos=(TABLE_CENTER_X, 0, -TABLE_HALF[2]),
                        rgba=(0.76, 0.64, 0.5, 1.0))
    arena.worldbody.add("light", name="key", pos=(0.3, 0.5, 2.0), dir=(-0.1, -0.2, -1.0), directional=True,
                        diffuse=(0.6, 0.6, 0.6), castshadow=False)
    for name, eye, target, fovy in ((OBS_CAMERA, setup.camera_eye, setup.camera_target, layout.CAMERA_FOVY),
                                    (RENDER_CAMERA, setup.render_eye, setup.render_target, layout.RENDER_FOVY),
                                    (ARUCO_CAMERA, layout.ARUCO_CAMERA_EYE, layout.ARUCO_CAMERA_TARGET,
                                     layout.ARUCO_CAMERA_FOVY)):
        arena.worldbody.add("camera", name=name, pos=eye, quat=look_at(np.array(eye), np.array(target)),
                            fovy=math.degrees(fovy))
    return arena


def aruco_texture(marker_id: int, dictionary: str = layout.ARUCO_DICTIONARY, cell_px: int = 16) -> bytes:
    """PNG of ArUco marker `marker_id` with a white quiet zone, sized so that the black square
    spans layout.ARUCO_MARKER_FRACTION of the image (made with OpenCV: nothing downloaded)."""
    import cv2

    aruco_dict = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary))
    cells = aruco_dict.markerSize + 2  # the code and its black border
    side = cells * cell_px
    margin = round(side * (1.0 / layout.ARUCO_MARKER_FRACTION - 1.0) / 2.0)
    marker = cv2.aruco.generateImageMarker(aruco_dict, marker_id, side)
    sheet = cv2.copyMakeBorder(marker, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_GRAY2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode ArUco marker {marker_id} as PNG")
    return png.tobytes()


def build_cube(name: str, half_size: float, rgba: tuple[float, ...], marker_id: int | None = None) -> mjcf.RootElement:
    """A free cube of density CUBE_DENSITY (its free joint is added by the attachment frame),
    with ArUco marker `marker_id` on its top face when given (geom group ARUCO_GROUP)."""
    cube = mjcf.RootElement(model=name)
    body = cube.worldbody.add("body", name="body")
    set_geom_defaults(cube)
    body.add("geom", name="geom", type="box", size=(half_size,) * 3, rgba=rgba, condim=4)
    if marker_id is not None:
        # A sheet 0.2 mm thick on the top face, massless and without contacts (the body's inertia
        # is given below). MuJoCo maps a 2D texture onto a box's top face with the image's rows
        # along -y and columns along +x, so the marker's frame is the cube's frame (x right, y up
        # in the image, z out of the face).
        texture = cube.asset.add("texture", name="aruco", type="2d",
                                 file=mjcf.Asset(aruco_texture(marker_id), ".png"))
        material = cube.asset.add("material", name="aruco", texture=texture, rgba=(1, 1, 1, 1), specular=0.0,
                                  shininess=0.0)
        body.add("geom", name="aruco", type="box", size=(half_size, half_size, 1e-4), pos=(0, 0, half_size + 1e-4),
                 material=material, contype=0, conaffinity=0, group=ARUCO_GROUP, mass=0.0)
    mass = CUBE_DENSITY * (2 * half_size) ** 3
    body.add("inertial", pos=(0, 0, 0), mass=mass, diaginertia=(mass * (2 * half_size) ** 2 / 6,) * 3)
    return cube


def _add_goal_marker(arena: mjcf.RootElement, task: str, setup: layout.ArmSetup) -> None:
    """A mocap body showing the goal: the push target disc (seen by the observation camera, as
    in ManiSkill) or the pick goal sphere (hidden from it, as in ManiSkill)."""
    body = arena.worldbody.add("body", name=GOAL_BODY, mocap=True)
    if task == "push_cube":
        for k, (radius, rgba) in enumerate(((1.0, (1, 0, 0, 1)), (0.8, (1, 1, 1, 1)), (0.6, (1, 0, 0, 1)),
                                            (0.4, (1, 1, 1, 1)), (0.2, (1, 0, 0, 1)))):
            body.add("geom", name=f"ring{k}", type="cylinder", size=(radius * layout.PUSH_GOAL_RADIUS, 1e-4),
                     pos=(0, 0, 1e-4 * (k + 1)), rgba=rgba, contype=0, conaffinity=0)
    elif task == "pick_cube":
        body.add("geom", name="sphere", type="sphere", size=(setup.pick_goal_thresh,), rgba=(0, 1, 0, 0.5),
                 contype=0, conaffinity=0, group=VIEWER_ONLY_GROUP)


def build_scene(task: str, arm: str = "panda") -> mjcf.RootElement:
    """The whole scene of `task`: arena + `arm` (where tasks.layout.ARM_SETUPS places it) + the
    task's objects and goal marker."""
    if task not in CUBE_NAMES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(CUBE_NAMES)}")
    setup = layout.arm_setup(arm, task)
    arena = build_arena(setup)
    arena.option.impratio = setup.mujoco_impratio
    arena.attach(build_arm(arm)).pos = setup.base_pos
    for k, name in enumerate(CUBE_NAMES[task]):
        rgba = PUSH_CUBE_RGBA if task == "push_cube" else CUBE_RGBA[name]
        frame = arena.attach(build_cube(name, setup.cube_half_size, rgba, marker_id=k))
        frame.pos = (0.3 * k, 0.5, setup.cube_half_size)  # out of the way until the first reset
        frame.add("freejoint", name="free")
    if task == "open_drawer":
        arena.attach(build_cabinet()).pos = (layout.CABINET_CENTER_X, 0, 0)
    _add_goal_marker(arena, task, setup)
    return arena


@functools.lru_cache(maxsize=None)
def compile_scene(task: str, arm: str = "panda") -> mujoco.MjModel:
    """The compiled nominal model of `task` on `arm`, built once per process (copy it per env)."""
    scene = build_scene(task, arm)
    model = mujoco.MjModel.from_xml_string(scene.to_xml_string(), assets=scene.get_assets())
    # ManiSkill's camera clipping planes; MuJoCo states them as fractions of the model's extent.
    model.vis.map.znear = layout.CAMERA_NEAR / model.stat.extent
    model.vis.map.zfar = layout.CAMERA_FAR / model.stat.extent
    return model
