"""Apply the physical fields of a DomainParams to one env's model.

Every value is written from the nominal model, so shifts never compound across episodes.
What each field changes here (the ManiSkill backend must mean the same):

- friction_scale: every geom's friction coefficients (objects, fingers, table, arm);
- object_mass_scale: mass and inertia of the manipulated objects (cubes, the drawer);
- object_size_scale: the cubes' half size (mass follows at constant density, then the mass
  scale applies) and the drawer's handle fin (it stays attached to the drawer front);
- controller_gain_scale: stiffness and damping of every joint PD drive (arm and fingers);
- joint_damping_scale: the arm joints' viscous damping. ManiSkill's Panda has no other joint
  damping than its drives' (the URDF's 0.003 is overwritten by the controller), so this
  multiplies the arm drives' damping on top of controller_gain_scale;
- camera_pose_jitter: the observation camera's eye and look-at target each move by
  U[-j, j] per axis, drawn from the env's generator (six draws every episode, even at j = 0,
  so a given seed yields the same initial states whatever the jitter).
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks import layout
from tasks.domain import DomainParams
from tasks.drawer_geometry import handle_offset
from tasks.mujoco.index import SceneIndex
from tasks.mujoco.scene import CUBE_DENSITY, look_at


def apply_shifts(model: mujoco.MjModel, data: mujoco.MjData, nominal: mujoco.MjModel, index: SceneIndex,
                 params: DomainParams, rng: np.random.Generator, setup: layout.ArmSetup) -> np.ndarray:
    """Write `params` into `model` (a copy of `nominal`); returns the cubes' half sizes [n_cubes].

    Ends with mj_setConst, which recomputes the mass-dependent constants (constraint
    weights) and overwrites `data`'s state: call it before writing the episode's initial state.
    """
    model.geom_friction[:] = nominal.geom_friction * params.friction_scale
    half_sizes = _scale_objects(model, nominal, index, params.object_size_scale, params.object_mass_scale)
    _scale_drives(model, nominal, index, params.controller_gain_scale, params.joint_damping_scale)
    _jitter_camera(model, index.obs_camera, params.camera_pose_jitter, rng, setup)
    mujoco.mj_setConst(model, data)
    return half_sizes


def _set_box(model: mujoco.MjModel, geom: int, half: np.ndarray) -> None:
    """Resize a box geom, with its bounding sphere and box (what the collision broad phase reads)."""
    model.geom_size[geom] = half
    model.geom_rbound[geom] = np.linalg.norm(half)
    model.geom_aabb[geom] = np.concatenate([np.zeros(3), half])


def _scale_objects(model: mujoco.MjModel, nominal: mujoco.MjModel, index: SceneIndex, size: float,
                   mass: float) -> np.ndarray:
    half_sizes = np.zeros(len(index.cube_geoms))
    for k, (geom, body) in enumerate(zip(index.cube_geoms, index.cube_bodies)):
        half = float(nominal.geom_size[geom, 0]) * size
        _set_box(model, geom, np.full(3, half))
        m = CUBE_DENSITY * (2 * half) ** 3 * mass
        model.body_mass[body] = m
        model.body_inertia[body] = m * (2 * half) ** 2 / 6
        half_sizes[k] = half
    if index.drawer_body >= 0:
        model.body_mass[index.drawer_body] = nominal.body_mass[index.drawer_body] * mass
        model.body_inertia[index.drawer_body] = nominal.body_inertia[index.drawer_body] * mass
        _set_box(model, index.handle_geom, np.asarray(layout.HANDLE_HALF) * size)
        model.geom_pos[index.handle_geom] = handle_offset(size)
    return half_sizes


def _scale_drives(model: mujoco.MjModel, nominal: mujoco.MjModel, index: SceneIndex, gain: float,
                  damping: float) -> None:
    # A position actuator is force = kp * ctrl - kp * q - kv * qdot: gainprm[0] = kp,
    # biasprm[1] = -kp, biasprm[2] = -kv.
    for ids, kv_scale in ((index.arm_actuators, gain * damping), (index.finger_actuators, gain)):
        model.actuator_gainprm[ids, 0] = nominal.actuator_gainprm[ids, 0] * gain
        model.actuator_biasprm[ids, 1] = nominal.actuator_biasprm[ids, 1] * gain
        model.actuator_biasprm[ids, 2] = nominal.actuator_biasprm[ids, 2] * kv_scale


def _jitter_camera(model: mujoco.MjModel, camera: int, jitter: float, rng: np.random.Generator,
                   setup: layout.ArmSetup) -> None:
    offsets = rng.uniform(-1.0, 1.0, size=(2, 3)) * jitter
    eye = np.asarray(setup.camera_eye) + offsets[0]
    target = np.asarray(setup.camera_target) + offsets[1]
    model.cam_pos[camera] = eye
    model.cam_quat[camera] = look_at(eye, target)
