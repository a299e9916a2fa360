"""Coordinate frames the tf2 way: transforms from `/tf` and `/tf_static`, resolved by a graph.

A robot cell publishes where its frames are on `/tf_static` (fixed: the arm's mount in `world`,
a calibrated camera) and `/tf` (moving: links, tracked objects), as `tf2_msgs/TFMessage`s of
`geometry_msgs/TransformStamped` (header.frame_id = parent, child_frame_id = child, the transform
= the child's pose in the parent). `FrameGraph` keeps them and answers "where is frame A in
frame B" along any chain of them; the chain itself is found and composed by pytransform3d's
`TransformManager`, not by hand.

Time: a static transform holds for ever. A moving one is kept as a short history per edge and a
lookup at time t uses each edge's latest sample at or before t (zero-order hold, the rule the
bag reader applies to every other input); without a time, the latest. A lookup before an edge's
first sample fails, as tf2's extrapolation into the past does.

`Frames` is what the observation assembler needs on top: the robot's base frame, the task frame
the policy observes in, and `base_in_task`, the base's pose in the task frame, used only when the
graph does not connect the two (no tf published, or none recorded).

Quaternions here are in ROS order (x, y, z, w) where they come from messages or parameters.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pytransform3d.transform_manager import TransformManager

from sim2real.robot.rotations import matrix_to_quat
from sim2real.ros import messages as m
from sim2real.ros.messages import TF_MESSAGE
from tasks.layout import ROBOT_BASE_POS, arm_setup

TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"
# How long a moving edge's history is kept (s): tf2's default buffer length.
HISTORY_S = 10.0


def quat_xyzw_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> rotation matrix [3, 3] (normalised first)."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion {list(q)} (x, y, z, w) has norm {n}: expected a unit quaternion")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quat_wxyz_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of quaternions (w, x, y, z): the rotation b, then a."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


def pose_matrix(position: Sequence[float], quat_xyzw: Sequence[float] = (0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """A homogeneous transform [4, 4] from a position and a quaternion (x, y, z, w)."""
    out = np.eye(4)
    out[:3, :3] = quat_xyzw_to_matrix(quat_xyzw)
    out[:3, 3] = np.asarray(position, dtype=np.float64).reshape(3)
    return out


def base_in_task_matrix(values: Sequence[float], where: str = "base_in_task") -> np.ndarray:
    """`base_in_task` -> [4, 4]: [x, y, z] (axes aligned with the task frame) or
    [x, y, z, qx, qy, qz, qw] (a rotated mount).

    Raises:
        ValueError: naming `where`, for another length, non-finite values or a zero quaternion.
    """
    vals = [float(v) for v in values]
    if len(vals) not in (3, 7) or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{where}={list(values)}: expected 3 numbers (x, y, z) or 7 (x, y, z, qx, qy, qz, qw)")
    try:
        return pose_matrix(vals[:3], vals[3:] if len(vals) == 7 else (0.0, 0.0, 0.0, 1.0))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def base_in_task_or_default(values: Sequence[float], arm: str, where: str = "base_in_task") -> tuple[float, ...]:
    """`values` as given, or (empty) where the simulated tasks stand `arm`'s base in their table
    frame (tasks.layout.ARM_SETUPS: the Panda's at (-0.615, 0, 0)): the frame its policies observe in.

    Raises:
        ValueError: naming `where`, when empty and `arm` has no task scene to take it from.
    """
    if len(values):
        return tuple(float(v) for v in values)
    try:
        return tuple(arm_setup(arm).base_pos)
    except ValueError:
        raise ValueError(f"{where}: not given, and arm {arm!r} has no simulated task scene to take it from "
                         f"(tasks.layout.ARM_SETUPS); set it to the base's pose in the task frame") from None


def transform_stamped(parent: str, child: str, matrix: np.ndarray, stamp: float | Any | None = None) -> Any:
    """A geometry_msgs/TransformStamped of `child`'s pose `matrix` [4, 4] in `parent`."""
    mat = np.asarray(matrix, dtype=np.float64)
    w, x, y, z = matrix_to_quat(mat[:3, :3])
    t = m.TYPESTORE.types
    return t[TRANSFORM_STAMPED](
        header=m.header(parent, stamp), child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=float(mat[0, 3]), y=float(mat[1, 3]), z=float(mat[2, 3])),
            rotation=t["geometry_msgs/msg/Quaternion"](x=float(x), y=float(y), z=float(z), w=float(w))))


def tf_message(transforms: Iterable[Any]) -> Any:
    """A tf2_msgs/TFMessage holding `transforms` (TransformStamped)."""
    return m.TYPESTORE.types[TF_MESSAGE](transforms=list(transforms))


@dataclass
class _Edge:
    stamps: list[float] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    static: bool = False

    def at(self, time: float | None) -> np.ndarray | None:
        if self.static or time is None:
            return self.matrices[-1]
        i = bisect_right(self.stamps, time)
        return self.matrices[i - 1] if i else None


class FrameGraph:
    """Transforms between named frames, fed by TFMessages (live or from a bag).

    Args:
        history_s: how much of a moving edge's past is kept (s), measured back from its newest
            sample; a bag reader passes `math.inf` to keep the whole recording.
    """

    def __init__(self, history_s: float = HISTORY_S) -> None:
        self.history_s = history_s
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._parent: dict[str, str] = {}
        self._cache: dict[tuple[Any, ...], TransformManager] = {}

    def __len__(self) -> int:
        return len(self._edges)

    @property
    def frames(self) -> set[str]:
        """Every frame named by a transform so far."""
        return {name for edge in self._edges for name in edge}

    def set_transform(self, parent: str, child: str, matrix: np.ndarray, stamp: float = 0.0,
                      static: bool = False) -> None:
        """Record `child`'s pose `matrix` [4, 4] in `parent` at `stamp` (s).

        Raises:
            ValueError: an empty or equal frame pair, a non-finite matrix, or a child that
                already has another parent (tf2's tree rule: one parent per frame).
        """
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r}: expected two different, non-empty frame names")
        mat = np.asarray(matrix, dtype=np.float64)
        if mat.shape != (4, 4) or not np.all(np.isfinite(mat)):
            raise ValueError(f"transform {parent!r} -> {child!r}: expected a finite [4, 4] matrix")
        known = self._parent.get(child)
        if known is not None and known != parent:
            raise ValueError(f"frame {child!r} already has parent {known!r}; a transform from {parent!r} "
                             "would give it two (tf2 frames form a tree)")
        up = parent
        while up in self._parent:  # the new edge must not close a loop (the tree rule again)
            up = self._parent[up]
            if up == child:
                raise ValueError(f"transform {parent!r} -> {child!r} would close a loop: {parent!r} already "
                                 f"descends from {child!r}")
        self._parent[child] = parent
        edge = self._edges.setdefault((parent, child), _Edge(static=static))
        if static or edge.static:
            edge.static, edge.stamps, edge.matrices = True, [stamp], [mat]
        else:
            i = bisect_right(edge.stamps, stamp)
            edge.stamps.insert(i, stamp)
            edge.matrices.insert(i, mat)
            cutoff = edge.stamps[-1] - self.history_s
            while len(edge.stamps) > 1 and edge.stamps[0] < cutoff:
                edge.stamps.pop(0)
                edge.matrices.pop(0)
        self._cache.clear()

    def add_message(self, msg: Any, static: bool = False) -> list[str]:
        """Add every transform of a tf2_msgs/TFMessage; returns reasons for those refused."""
        reasons = []
        for ts in msg.transforms:
            tr, rot = ts.transform.translation, ts.transform.rotation
            try:
                mat = pose_matrix((tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w))
                self.set_transform(ts.header.frame_id, ts.child_frame_id, mat, m.stamp_to_seconds(ts.header.stamp),
                                   static)
            except ValueError as exc:
                reasons.append(f"tf: {exc}")
        return reasons

    def _manager(self, time: float | None) -> TransformManager:
        chosen = {key: edge.at(time) for key, edge in self._edges.items()}
        token = (time is None,) + tuple(sorted((k, id(v)) for k, v in chosen.items() if v is not None))
        tm = self._cache.get(token)
        if tm is None:
            tm = TransformManager(strict_check=False, check=False)
            for (parent, child), mat in chosen.items():
                if mat is not None:
                    tm.add_transform(child, parent, mat)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[token] = tm
        return tm

    def lookup(self, target: str, source: str, time: float | None = None) -> np.ndarray | None:
        """`source` frame's pose in `target` frame [4, 4] (maps points from source to target)
        at `time` (s; None: the latest); None when no chain of transforms connects them then."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        frames = self.frames
        if target not in frames or source not in frames:
            return None
        try:
            return self._manager(time).get_transform(source, target)
        except (KeyError, ValueError):
            return None


@dataclass
class Frames:
    """The frames inputs arrive in and the one the policy observes in.

    Args:
        base_frame: the robot base frame (joint-state FK; inputs with an empty frame_id).
        task_frame: the frame the policy observes in (the tasks' table frame).
        base_in_task: the base's pose in the task frame, [x, y, z] or [x, y, z, qx, qy, qz, qw]:
            the fallback when `graph` does not connect the two frames.
        graph: transforms from /tf and /tf_static (empty: only the base and task frames resolve).
    """

    base_frame: str = "panda_link0"
    task_frame: str = "table"
    base_in_task: tuple[float, ...] = ROBOT_BASE_POS
    graph: FrameGraph = field(default_factory=FrameGraph)

    def __post_init__(self) -> None:
        self._fallback = base_in_task_matrix(self.base_in_task)

    def base_to_task(self, time: float | None = None) -> np.ndarray:
        """The base frame's pose in the task frame [4, 4]: from tf when connected, else `base_in_task`."""
        found = self.graph.lookup(self.task_frame, self.base_frame, time)
        if found is None and time is not None:
            # A mount published on /tf (not /tf_static) may have no sample before the first
            # joint state; the base does not move, so its latest pose stands in.
            found = self.graph.lookup(self.task_frame, self.base_frame)
        return self._fallback if found is None else found

    def to_task_matrix(self, frame_id: str, time: float | None = None) -> np.ndarray | None:
        """`frame_id`'s pose in the task frame [4, 4]; None when it cannot be resolved.

        An empty frame_id is the base frame. Tf is tried first (the frame to the task frame,
        then the frame to the base frame and `base_to_task`).
        """
        frame = frame_id.lstrip("/") or self.base_frame
        if frame == self.task_frame:
            return np.eye(4)
        found = self.graph.lookup(self.task_frame, frame, time)
        if found is not None:
            return found
        to_base = np.eye(4) if frame == self.base_frame else self.graph.lookup(self.base_frame, frame, time)
        return None if to_base is None else self.base_to_task(time) @ to_base

    def to_task(self, position: np.ndarray, frame_id: str, time: float | None = None) -> np.ndarray | None:
        """A position in `frame_id` expressed in the task frame; None for a frame that cannot be resolved."""
        mat = self.to_task_matrix(frame_id, time)
        if mat is None:
            return None
        return mat[:3, :3] @ np.asarray(position, dtype=np.float64) + mat[:3, 3]

    def describe(self) -> str:
        """The frames that resolve, for error messages."""
        known = sorted(self.graph.frames - {self.task_frame, self.base_frame})
        extra = f", or a frame tf connects to them ({', '.join(known)})" if known else \
            " (no tf received: publish /tf_static or use one of these)"
        return f"{self.base_frame!r} (or empty) or {self.task_frame!r}{extra}"
