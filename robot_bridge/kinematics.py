"""The Panda arm's kinematics from its URDF, for deployment without a simulator (numpy only).

`RobotModel.from_urdf()` reads the serial chain base -> TCP of ManiSkill's `panda_v2.urdf`
(the file both simulators build the arm from) with its joint limits and velocity limits,
plus the finger joints' limits. `fk` gives the TCP pose in the base frame (`panda_link0`);
the tasks' observations are in the table frame, which is the base frame shifted by
`tasks.layout.ROBOT_BASE_POS`.

Inverse kinematics is damped least squares, iterated the way tasks.mujoco.control does it
(same damping, tolerance and stall rule), so an end-effector delta action becomes the same
joint targets on the real arm as in the MuJoCo backend.

Action scaling constants are copied from tasks.layout, because importing `tasks` pulls in
torch and Hydra; tests/test_kinematics.py checks that the two agree.
"""

from __future__ import annotations

import importlib.util
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARM_JOINT_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = ("panda_finger_joint1", "panda_finger_joint2")
BASE_LINK = "panda_link0"
TCP_LINK = "panda_hand_tcp"


@dataclass(frozen=True)
class ActionScales:
    """How a normalised task action maps to targets (the values of tasks.layout).

    Args:
        ee_delta_pos: metres the TCP target moves per step for action +-1 (pd_ee_delta_pos).
        joint_delta_pos: radians each joint target moves per step for action +-1 (pd_joint_delta_pos).
        finger_open: finger joint target for gripper action +1.
        finger_closed: finger joint target for gripper action -1 (below the URDF's lower limit:
            the simulated drive keeps squeezing; the safety filter clamps it to the limit).
    """

    ee_delta_pos: float = 0.1
    joint_delta_pos: float = 0.1
    finger_open: float = 0.04
    finger_closed: float = -0.01

    def gripper_target(self, a: float) -> float:
        """Finger joint target for the normalised gripper action a in [-1, 1] (linear)."""
        return self.finger_closed + (a + 1.0) / 2.0 * (self.finger_open - self.finger_closed)


@dataclass(frozen=True)
class JointLimit:
    lower: float
    upper: float
    velocity: float


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
    """Result of `RobotModel.solve_ik`: the last iterate, whether it met the tolerance, its error."""

    q: np.ndarray
    converged: bool
    error: float
    iterations: int


def panda_urdf_path() -> Path:
    """ManiSkill's panda_v2.urdf inside the installed mani_skill package (located, not imported,
    as tasks.mujoco.robot does: importing mani_skill takes seconds)."""
    spec = importlib.util.find_spec("mani_skill")
    if spec is None or spec.origin is None:
        raise ImportError("robot_bridge.kinematics reads ManiSkill's panda_v2.urdf: install mani-skill==3.0.1 "
                          "or pass the URDF path to RobotModel.from_urdf")
    path = Path(spec.origin).parent / "assets" / "robots" / "panda" / "panda_v2.urdf"
    if not path.exists():
        raise FileNotFoundError(f"Panda URDF not found at {path}")
    return path


def _floats(text: str | None, default: tuple[float, ...], where: str) -> np.ndarray:
    values = tuple(float(v) for v in text.split()) if text else default
    if len(values) != 3:
        raise ValueError(f"{where}: expected 3 numbers, found {text!r}")
    return np.array(values, dtype=np.float64)


def rpy_matrix(rpy: np.ndarray) -> np.ndarray:
    """URDF's fixed-axis roll, pitch, yaw as a rotation matrix: Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(rpy[0]), math.sin(rpy[0])
    cp, sp = math.cos(rpy[1]), math.sin(rpy[1])
    cy, sy = math.cos(rpy[2]), math.sin(rpy[2])
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` about the unit vector `axis` (Rodrigues)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return np.array([[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
                     [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
                     [t * x * z - s * y, t * y * z + s * x, t * z * z + c]])


def matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    # Divide by the largest of the four candidates: the others lose precision near 180 degrees.
    if trace > 0.0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = np.array([0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = np.array([(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s])
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = np.array([(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s])
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = np.array([(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vector taking `current` to `target` (both [3, 3]), the short way round."""
    delta = target @ current.T
    quat = matrix_to_quat(delta)  # w >= 0: the angle is in [0, pi]
    sin_half = float(np.linalg.norm(quat[1:]))
    if sin_half < 1e-12:
        return np.zeros(3)
    return quat[1:] / sin_half * 2.0 * math.atan2(sin_half, quat[0])


@dataclass(frozen=True)
class RobotModel:
    """A serial arm's kinematics and limits, read from a URDF.

    Args:
        joint_names: the chain's moving joints, base to tip.
        lower, upper: their position limits [n].
        velocity_limits: their velocity limits [n] (rad/s or m/s).
        gripper_limits: limits of the finger joints by name (not on the base -> tip chain).
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
    def from_urdf(cls, path: str | Path | None = None, base_link: str = BASE_LINK, tip_link: str = TCP_LINK,
                  gripper_joints: tuple[str, ...] = FINGER_JOINT_NAMES) -> RobotModel:
        """Parse the chain base_link -> tip_link of `path` (default: ManiSkill's panda_v2.urdf)."""
        path = Path(path) if path is not None else panda_urdf_path()
        root = ET.parse(path).getroot()
        by_child: dict[str, ET.Element] = {}
        by_name: dict[str, ET.Element] = {}
        for el in root.findall("joint"):
            child, name = el.find("child"), el.get("name", "")
            if child is None or el.find("parent") is None:
                raise ValueError(f"{path}: joint {name!r} lacks <parent> or <child>")
            by_child[child.get("link", "")] = el
            by_name[name] = el
        # Walk up from the tip: in a tree every link has at most one parent joint.
        elements: list[ET.Element] = []
        link = tip_link
        while link != base_link:
            if link not in by_child:
                raise ValueError(f"{path}: no joint chain from {base_link!r} to {tip_link!r} (stuck at {link!r})")
            elements.append(by_child[link])
            link = by_child[link].find("parent").get("link", "")  # type: ignore[union-attr]
        segments, names, limits = [], [], []
        pending = np.eye(4)  # fixed transforms since the last moving joint
        for el in reversed(elements):
            kind, origin, axis = cls._joint_origin(el, path)
            pending = pending @ origin
            if kind != "fixed":
                segments.append(_Segment(kind, pending, axis))
                names.append(el.get("name", ""))
                limits.append(cls._limit(el, path))
                pending = np.eye(4)
        grippers = {}
        for name in gripper_joints:
            if name not in by_name:
                raise ValueError(f"{path}: gripper joint {name!r} not found")
            grippers[name] = cls._limit(by_name[name], path)
        return cls(joint_names=tuple(names), lower=np.array([lim.lower for lim in limits]),
                   upper=np.array([lim.upper for lim in limits]),
                   velocity_limits=np.array([lim.velocity for lim in limits]), gripper_limits=grippers,
                   base_link=base_link, tip_link=tip_link, source=str(path),
                   segments=tuple(segments), tail=pending)

    @staticmethod
    def _joint_origin(el: ET.Element, path: Path) -> tuple[str, np.ndarray, np.ndarray]:
        """A joint's type, origin transform [4, 4] and unit axis."""
        name, kind = el.get("name", ""), el.get("type", "")
        if kind not in ("revolute", "prismatic", "fixed"):
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

    @staticmethod
    def _limit(el: ET.Element, path: Path) -> JointLimit:
        limit, name = el.find("limit"), el.get("name", "")
        if limit is None or any(limit.get(k) is None for k in ("lower", "upper", "velocity")):
            raise ValueError(f"{path}: joint {name!r} needs <limit lower= upper= velocity=> (a safety filter "
                             f"cannot run without them)")
        return JointLimit(float(limit.get("lower", "")), float(limit.get("upper", "")),
                          float(limit.get("velocity", "")))

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
                 rot_weight: float = 0.5, iterations: int = 50, tol: float = 1e-4, stall: float = 0.99) -> IkSolution:
        """Damped least squares IK from `q`: dq = J^T (J J^T + damping^2 I)^-1 e, clamped to the limits.

        With `target_quat` (w, x, y, z) the error is the 6-vector of position (m) and rot_weight x
        rotation (rad), as tasks.mujoco.control measures it; without it, position only (the 3 linear
        Jacobian rows). Stops when |e| < tol, or when an iteration keeps more than `stall` of the
        error (an unreachable target).

        Args:
            limits: (lower, upper) to clamp to; default the URDF's (pass tighter safety limits to
                keep solutions where the safety filter will not clamp them).
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
            q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + damping_eye, err), lower, upper)
        return IkSolution(q, False, norm, iterations)

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


def ee_delta_action_to_joint_targets(model: RobotModel, q: np.ndarray, action: np.ndarray,
                                     ref_quat: np.ndarray | None = None, scales: ActionScales = ActionScales(),
                                     **ik_kwargs: object) -> np.ndarray:
    """A `pd_ee_delta_pos` action [4] -> arm joint targets [n] followed by one target per finger joint.

    As in the tasks: the action is clipped to [-1, 1]; the TCP target is the current TCP position
    plus scales.ee_delta_pos x action[:3]; the last dim drives every finger linearly between
    finger_closed (-1) and finger_open (+1).

    Args:
        q: the arm's current joint positions [n].
        ref_quat: orientation (w, x, y, z) to hold. The MuJoCo backend holds the TCP orientation of
            the episode's start: pass that to match it. None holds the current orientation
            (ManiSkill's behaviour).
    """
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    if action.shape != (4,):
        raise ValueError(f"pd_ee_delta_pos action: expected 4 values (dx, dy, dz, gripper), got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_ee_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if ref_quat is None:
        ref_quat = model.fk(q)[1]
    arm = model.ik_delta(q, scales.ee_delta_pos * action[:3], ref_quat, **ik_kwargs)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[3])))
    return np.concatenate([arm, fingers])


def joint_delta_action_to_joint_targets(model: RobotModel, q: np.ndarray, action: np.ndarray,
                                        scales: ActionScales = ActionScales()) -> np.ndarray:
    """A `pd_joint_delta_pos` action [n + 1] -> arm targets q + scale x action (within the URDF limits)
    followed by the finger targets, as the tasks map it."""
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    if action.shape != (model.dof + 1,):
        raise ValueError(f"pd_joint_delta_pos action: expected {model.dof + 1} values, got {action.size}")
    if not np.all(np.isfinite(action)):
        raise ValueError(f"pd_joint_delta_pos action contains NaN or inf: {action.tolist()}")
    action = np.clip(action, -1.0, 1.0)
    arm = np.clip(np.asarray(q, dtype=np.float64).reshape(-1) + scales.joint_delta_pos * action[:-1],
                  model.lower, model.upper)
    fingers = np.full(len(model.gripper_limits), scales.gripper_target(float(action[-1])))
    return np.concatenate([arm, fingers])
