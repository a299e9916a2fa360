"""Name-to-address lookups for a compiled task scene, resolved once per model."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim2real.robot.description import ArmDescription
from tasks.mujoco.robot import TCP_SITE, gripper_bodies
from tasks.mujoco.scene import CUBE_NAMES, GOAL_BODY, OBS_CAMERA, RENDER_CAMERA
from tasks.mujoco.urdf import parse_urdf


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(model, kind, name)
    if i < 0:
        raise KeyError(f"the compiled scene has no {kind.name.removeprefix('mjOBJ_').lower()} named {name!r}")
    return i


@dataclass(frozen=True)
class SceneIndex:
    """Addresses of everything the env reads or writes, in any copy of one task's model."""

    arm_qpos: np.ndarray        # [n] qpos addresses of the arm joints
    arm_dof: np.ndarray         # [n] dof addresses of the arm joints
    finger_qpos: np.ndarray     # [g] the gripper joints' (2 fingers, 1 jaw)
    finger_dof: np.ndarray      # [g]
    arm_joint_ids: np.ndarray   # [n] joint ids (for ranges and damping)
    arm_actuators: np.ndarray   # [n] actuator ids
    finger_actuators: np.ndarray  # [g]
    tcp_site: int
    finger_bodies: tuple[int, int]  # the two bodies that close on an object
    cube_bodies: tuple[int, ...]    # bodies carrying each cube's geom and inertia
    cube_geoms: tuple[int, ...]
    cube_qpos: tuple[int, ...]      # address of each cube's free joint in qpos (7 values)
    cube_dof: tuple[int, ...]       # address in qvel (6 values)
    goal_mocap: int
    obs_camera: int
    render_camera: int
    cabinet_body: int = -1      # the cabinet's attachment frame (moved per episode)
    drawer_body: int = -1
    drawer_qpos: int = -1
    handle_geom: int = -1

    @classmethod
    def build(cls, model: mujoco.MjModel, task: str, description: ArmDescription) -> SceneIndex:
        J, B, G, S, A, C = (mujoco.mjtObj.mjOBJ_JOINT, mujoco.mjtObj.mjOBJ_BODY, mujoco.mjtObj.mjOBJ_GEOM,
                            mujoco.mjtObj.mjOBJ_SITE, mujoco.mjtObj.mjOBJ_ACTUATOR, mujoco.mjtObj.mjOBJ_CAMERA)
        robot = f"{description.name}/"  # the attached arm model's namespace
        names, finger_names = description.joint_names, description.gripper.joint_names
        arm = np.array([_id(model, J, robot + n) for n in names])
        fingers = np.array([_id(model, J, robot + n) for n in finger_names], dtype=int)
        cubes = CUBE_NAMES[task]
        cube_joints = [_id(model, J, f"{name}/free/") for name in cubes]
        extra = {}
        if task == "open_drawer":
            slide = _id(model, J, "cabinet/slide")
            extra = dict(cabinet_body=_id(model, B, "cabinet/"), drawer_body=_id(model, B, "cabinet/drawer"),
                         drawer_qpos=int(model.jnt_qposadr[slide]), handle_geom=_id(model, G, "cabinet/handle"))
        return cls(
            arm_qpos=model.jnt_qposadr[arm].copy(), arm_dof=model.jnt_dofadr[arm].copy(),
            finger_qpos=model.jnt_qposadr[fingers].copy(), finger_dof=model.jnt_dofadr[fingers].copy(),
            arm_joint_ids=arm,
            arm_actuators=np.array([_id(model, A, robot + n) for n in names]),
            finger_actuators=np.array([_id(model, A, robot + n) for n in finger_names], dtype=int),
            tcp_site=_id(model, S, robot + TCP_SITE),
            finger_bodies=tuple(_id(model, B, robot + n)  # type: ignore[arg-type]
                                for n in gripper_bodies(parse_urdf(description.urdf), description)),
            cube_bodies=tuple(_id(model, B, f"{name}/body") for name in cubes),
            cube_geoms=tuple(_id(model, G, f"{name}/geom") for name in cubes),
            cube_qpos=tuple(int(model.jnt_qposadr[j]) for j in cube_joints),
            cube_dof=tuple(int(model.jnt_dofadr[j]) for j in cube_joints),
            goal_mocap=int(model.body_mocapid[_id(model, B, GOAL_BODY)]),
            obs_camera=_id(model, C, OBS_CAMERA), render_camera=_id(model, C, RENDER_CAMERA),
            **extra)
