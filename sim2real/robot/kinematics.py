"""A serial arm's kinematics from its URDF (numpy only): chain reader, FK, Jacobian, DLS IK.

`KinematicChain.from_urdf(path, base_link, tip_link)` reads the moving joints from base_link
down to tip_link (revolute and prismatic; fixed joints are folded into the next transform)
with their limits. `fk` gives the tip pose in the base frame as position + quaternion
(w, x, y, z). `solve_ik` is damped least squares, in 6-D (position and orientation) or 3-D
(position only, for arms with fewer than six joints), clamped to joint limits at every step.

sim2real.robot.arm_model builds the Panda's `RobotModel` on this class.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from sim2real.robot.rotations import axis_angle_matrix, matrix_to_quat, quat_to_matrix, rotation_error, rpy_matrix

MOVING_JOINT_TYPES = ("revolute", "prismatic")
JOINT_TYPES = (*MOVING_JOINT_TYPES, "fixed")

ChainT = TypeVar("ChainT", bound="KinematicChain")


@dataclass(frozen=True)
class JointLimit:
    lower: float
    upper: float
    velocity: float


@dataclass(frozen=True)
class UrdfJoint:
    """One <joint> of a URDF: enough to check a description against the file before reading a chain."""

    name: str
    type: str
    parent: str
    child: str
    element: ET.Element


@dataclass(frozen=True)
class UrdfTree:
    """A URDF's links and joints (by name), as read by `read_urdf`."""

    path: Path
    links: tuple[str, ...]
    joints: dict[str, UrdfJoint]

    def parent_joint(self, link: str) -> UrdfJoint | None:
        """The joint whose child is `link` (None for the root: in a tree each link has at most one)."""
        for joint in self.joints.values():
            if joint.child == link:
                return joint
        return None

    def path_between(self, base_link: str, tip_link: str) -> list[UrdfJoint] | None:
        """The joints from base_link down to tip_link, base first; None if tip_link is not below base_link."""
        joints: list[UrdfJoint] = []
        link = tip_link
        while link != base_link:
            joint = self.parent_joint(link)
            if joint is None:
                return None
            joints.append(joint)
            link = joint.parent
        return joints[::-1]


def read_urdf(path: str | Path) -> UrdfTree:
    """Parse a URDF's link names and joints; a joint without <parent> or <child> is an error."""
    path = Path(path)
    root = ET.parse(path).getroot()
    joints: dict[str, UrdfJoint] = {}
    for el in root.findall("joint"):
        name, parent, child = el.get("name", ""), el.find("parent"), el.find("child")
        if parent is None or child is None:
            raise ValueError(f"{path}: joint {name!r} lacks <parent> or <child>")
        joints[name] = UrdfJoint(name, el.get("type", ""), parent.get("link", ""), child.get("link", ""), el)
    return UrdfTree(path, tuple(el.get("name", "") for el in root.findall("link")), joints)


@dataclass(frozen=True)
class _Segment:
    """One moving joint of the base -> tip chain: the fixed transform from the previous moving
    joint's frame (its origin, with any fixed joints in between folded in), then its motion."""

    type: str  # revolute or prismatic
    pre: np.ndarray  # [4, 4]
    axis: np.ndarray  # [3] unit axis in the joint frame

    @property
    def z_axis(self) -> bool:
        return bool(self.axis[2] == 1.0)


@dataclass(frozen=True)
class IkSolution:
    """Result of `KinematicChain.solve_ik`: the last iterate, whether it met the tolerance, its error."""

    q: np.ndarray
    converged: bool
    error: float
    iterations: int


def _floats(text: str | None, default: tuple[float, ...], where: str) -> np.ndarray:
    values = tuple(float(v) for v in text.split()) if text else default
    if len(values) != 3:
        raise ValueError(f"{where}: expected 3 numbers, found {text!r}")
    return np.array(values, dtype=np.float64)


def joint_origin(el: ET.Element, path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """A URDF joint's type, origin transform [4, 4] and unit axis."""
    name, kind = el.get("name", ""), el.get("type", "")
    if kind not in JOINT_TYPES:
        raise ValueError(f"{path}: joint {name!r} has type {kind!r}; expected revolute, prismatic or fixed")
    origin_el = el.find("origin")
    xyz = _floats(origin_el.get("xyz") if origin_el is not None else None, (0.0, 0.0, 0.0), f"{path}: {name} xyz")
    rpy = _floats(origin_el.get("rpy") if origin_el is not None else None, (0.0, 0.0, 0.0), f"{path}: {name} rpy")
    axis_el = el.find("axis")
    axis = _floats(axis_el.get("xyz") if axis_el is not None else None, (1.0, 0.0, 0.0), f"{path}: {name} axis")
    origin = np.eye(4)
    origin[:3, :3] = rpy_matrix(rpy)
    origin[:3, 3] = xyz
    return kind, origin, axis / np.linalg.norm(axis)


def joint_limit(el: ET.Element, path: Path) -> JointLimit:
    """A URDF joint's <limit>; all three bounds are required (a safety filter cannot run without them)."""
    limit, name = el.find("limit"), el.get("name", "")
    if limit is None or any(limit.get(k) is None for k in ("lower", "upper", "velocity")):
        raise ValueError(f"{path}: joint {name!r} needs <limit lower= upper= velocity=> (a safety filter "
                         f"cannot run without them)")
    return JointLimit(float(limit.get("lower", "")), float(limit.get("upper", "")),
                      float(limit.get("velocity", "")))


@dataclass(frozen=True)
class KinematicChain:
    """A serial arm's kinematics and limits, read from a URDF.

    Args:
        joint_names: the chain's moving joints, base to tip.
        lower, upper: their position limits [n].
        velocity_limits: their velocity limits [n] (rad/s or m/s), as the URDF gives them.
        gripper_limits: limits of the gripper joints by name (not on the base -> tip chain).
        base_link, tip_link: the chain's ends; poses are tip_link in base_link's frame.
        source: the URDF file (for error messages).
    """

    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limits: np.ndarray
    gripper_limits: dict[str, JointLimit]
    base_link: str
    tip_link: str
    source: str
    segments: tuple[_Segment, ...]
    tail: np.ndarray  # [4, 4] from the last moving joint to the tip

    def __post_init__(self) -> None:
        # Read-only: the safety filter checks its configuration against these limits.
        for array in (self.lower, self.upper, self.velocity_limits, self.tail):
            array.flags.writeable = False

    @classmethod
    def from_urdf(cls: type[ChainT], path: str | Path, base_link: str, tip_link: str,
                  gripper_joints: tuple[str, ...] = ()) -> ChainT:
        """Parse the chain base_link -> tip_link of the URDF at `path`, and the gripper joints' limits."""
        tree = read_urdf(path)
        elements = tree.path_between(base_link, tip_link)
        if elements is None:
            missing = [f"{link!r} is not a link of this URDF" for link in (base_link, tip_link)
                       if link not in tree.links]
            why = "; ".join(missing) if missing else f"{tip_link!r} is not below {base_link!r}"
            raise ValueError(f"{tree.path}: no joint chain from {base_link!r} to {tip_link!r} ({why})")
        segments, names, limits = [], [], []
        pending = np.eye(4)  # fixed transforms since the last moving joint
        for joint in elements:
            kind, origin, axis = joint_origin(joint.element, tree.path)
            pending = pending @ origin
            if kind != "fixed":
                segments.append(_Segment(kind, pending, axis))
                names.append(joint.name)
                limits.append(joint_limit(joint.element, tree.path))
                pending = np.eye(4)
        grippers = {}
        for name in gripper_joints:
            if name not in tree.joints:
                raise ValueError(f"{tree.path}: gripper joint {name!r} not found")
            grippers[name] = joint_limit(tree.joints[name].element, tree.path)
        return cls(joint_names=tuple(names), lower=np.array([lim.lower for lim in limits]),
                   upper=np.array([lim.upper for lim in limits]),
                   velocity_limits=np.array([lim.velocity for lim in limits]), gripper_limits=grippers,
                   base_link=base_link, tip_link=tip_link, source=str(tree.path),
                   segments=tuple(segments), tail=pending)

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def _frames(self, q: np.ndarray, joints: list[tuple[np.ndarray, np.ndarray, str]] | None = None) -> np.ndarray:
        """The tip's pose [4, 4] in the base frame; appends each moving joint's (world axis, world
        origin, type) to `joints` when given."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (self.dof,):
            raise ValueError(f"joint positions: expected {self.dof} values ({', '.join(self.joint_names)}), "
                             f"got {q.size}")
        pose = np.eye(4)
        # ndarray.dot rather than @: several times faster on 4x4s, and FK runs in the safety filter's loop.
        for segment, angle in zip(self.segments, q):
            pose = pose.dot(segment.pre)
            if joints is not None:
                joints.append((pose[:3, :3].dot(segment.axis), pose[:3, 3].copy(), segment.type))
            if segment.type == "prismatic":
                motion = np.eye(4)
                motion[:3, 3] = segment.axis * angle
            elif segment.z_axis:
                c, s = math.cos(angle), math.sin(angle)
                motion = np.array(((c, -s, 0.0, 0.0), (s, c, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0)))
            else:
                motion = np.eye(4)
                motion[:3, :3] = axis_angle_matrix(segment.axis, angle)
            pose = pose.dot(motion)
        return pose.dot(self.tail)

    def fk_matrix(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tip rotation [3, 3] and position [3] in the base frame."""
        pose = self._frames(q)
        return pose[:3, :3], pose[:3, 3]

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tip (TCP) position [3] and orientation quaternion (w, x, y, z) [4] in the base frame."""
        rot, pos = self.fk_matrix(q)
        return pos, matrix_to_quat(rot)

    def jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Geometric Jacobian [6, n] of the tip (linear rows, then angular), with the tip rotation and position."""
        joints: list[tuple[np.ndarray, np.ndarray, str]] = []
        pose = self._frames(q, joints)
        rot, pos = pose[:3, :3], pose[:3, 3]
        jac = np.zeros((6, self.dof))
        for i, (axis, origin, kind) in enumerate(joints):
            if kind == "revolute":
                jac[:3, i] = np.cross(axis, pos - origin)
                jac[3:, i] = axis
            else:
                jac[:3, i] = axis
        return jac, rot, pos

    def solve_ik(self, q: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray | None = None,
                 limits: tuple[np.ndarray, np.ndarray] | None = None, damping: float = 0.02,
                 rot_weight: float = 0.5, iterations: int = 50, tol: float = 1e-4, stall: float = 0.99,
                 lock_at_limits: bool = False, max_step: float | None = None) -> IkSolution:
        """Damped least squares IK from `q`: dq = J^T (J J^T + damping^2 I)^-1 e, clamped to the limits.

        With `target_quat` (w, x, y, z) the error is the 6-vector of position (m) and rot_weight x
        rotation (rad), as tasks.mujoco.control measures it; without it, position only (the 3 linear
        Jacobian rows). Stops when |e| < tol, or when an iteration keeps more than `stall` of the
        error (an unreachable target).

        The defaults track small TCP deltas exactly as tasks.mujoco.control does. To solve for a
        distant target (from the rest pose, say), pass lock_at_limits and max_step.

        Args:
            limits: (lower, upper) to clamp to; default the URDF's (pass tighter safety limits to
                keep solutions where the safety filter will not clamp them).
            lock_at_limits: leave out of the step any joint at a limit that the step would push
                past it, so the other joints do the work: otherwise the clamp cancels part of the
                step and the stall rule stops the solver, e.g. from the SO-100's rest pose, which
                sits on two joint limits.
            max_step: largest change of any joint per iteration (rad or m); the whole step is
                scaled down to it. A full Gauss-Newton step from far away overshoots, the error
                grows, and the stall rule gives up on a reachable target.
        """
        lower, upper = limits if limits is not None else (self.lower, self.upper)
        q = np.clip(np.asarray(q, dtype=np.float64).reshape(-1), lower, upper)
        target_pos = np.asarray(target_pos, dtype=np.float64)
        target_rot = None if target_quat is None else quat_to_matrix(target_quat)
        rows = 3 if target_rot is None else 6
        damping_eye = damping ** 2 * np.eye(rows)
        previous, norm = math.inf, math.inf
        for it in range(iterations):
            jac, rot, pos = self.jacobian(q)
            err = target_pos - pos
            if target_rot is not None:
                err = np.concatenate([err, rot_weight * rotation_error(target_rot, rot)])
                jac = np.concatenate([jac[:3], rot_weight * jac[3:]])
            else:
                jac = jac[:3]
            norm = float(np.linalg.norm(err))
            if norm < tol:
                return IkSolution(q, True, norm, it)
            if norm > stall * previous:
                return IkSolution(q, False, norm, it)
            previous = norm
            step = self._dls_step(jac, err, damping_eye, q, lower, upper, lock_at_limits)
            if max_step is not None and np.abs(step).max() > max_step:
                step *= max_step / np.abs(step).max()
            q = np.clip(q + step, lower, upper)
        return IkSolution(q, False, norm, iterations)

    @staticmethod
    def _dls_step(jac: np.ndarray, err: np.ndarray, damping_eye: np.ndarray, q: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray, lock_at_limits: bool) -> np.ndarray:
        """The damped least squares step J^T (J J^T + damping^2 I)^-1 e; with lock_at_limits, recomputed
        without the joints it would push past a limit they already sit on, until none is left."""
        free = np.ones(q.shape, dtype=bool)
        while True:
            masked = jac * free
            step = masked.T @ np.linalg.solve(masked @ masked.T + damping_eye, err)
            if not lock_at_limits:
                return step
            blocked = free & (((q <= lower) & (step < 0)) | ((q >= upper) & (step > 0)))
            if not blocked.any():
                return step
            free &= ~blocked

    def ik_delta(self, q: np.ndarray, delta_pos: np.ndarray, target_quat: np.ndarray | None = None,
                 **ik_kwargs: object) -> np.ndarray:
        """Joint targets [n] that move the TCP by `delta_pos` (m, base frame) from its pose at `q`.

        Position-only unless `target_quat` is given. A target the solver cannot reach within
        tolerance is not chased: the result is `q` itself (hold), as in both simulators.
        `ik_kwargs` go to `solve_ik` (limits, damping, iterations, tol, ...).
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        _, pos = self.fk_matrix(q)
        solution = self.solve_ik(q, pos + np.asarray(delta_pos, dtype=np.float64), target_quat,
                                 **ik_kwargs)  # type: ignore[arg-type]
        return solution.q if solution.converged else q.copy()
