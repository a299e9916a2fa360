"""Read the kinematic tree of a URDF into plain records.

Only what the MuJoCo robot builder needs: link inertials, collision shapes (meshes and
boxes) with their origins, and joints (type, origin, axis, limits). Parsing is ours
(xml.etree), so the MuJoCo arm is built from the very file ManiSkill loads.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Origin:
    """A pose in the parent frame: translation xyz and fixed-axis roll, pitch, yaw."""

    xyz: Vec3 = (0.0, 0.0, 0.0)
    rpy: Vec3 = (0.0, 0.0, 0.0)

    def quat(self) -> tuple[float, float, float, float]:
        """The rotation as a (w, x, y, z) quaternion; URDF's rpy means R = Rz(yaw) Ry(pitch) Rx(roll)."""
        r, p, y = (a / 2 for a in self.rpy)
        cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
        return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy)


@dataclass(frozen=True)
class Inertial:
    origin: Origin
    mass: float
    # (ixx, iyy, izz, ixy, ixz, iyz): the order of MuJoCo's `fullinertia`.
    inertia: tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Collision:
    """One collision shape: a mesh file (absolute path) or a box (full extents, as in URDF)."""

    origin: Origin
    mesh: Path | None = None
    box: Vec3 | None = None


@dataclass
class Link:
    name: str
    inertial: Inertial | None = None
    collisions: list[Collision] = field(default_factory=list)


@dataclass(frozen=True)
class Joint:
    name: str
    type: str  # revolute, prismatic, fixed
    parent: str
    child: str
    origin: Origin
    axis: Vec3 = (1.0, 0.0, 0.0)
    limits: tuple[float, float] | None = None


@dataclass
class Urdf:
    links: dict[str, Link]
    joints: list[Joint]

    @property
    def root(self) -> str:
        """The one link that is no joint's child."""
        children = {j.child for j in self.joints}
        roots = [name for name in self.links if name not in children]
        if len(roots) != 1:
            raise ValueError(f"URDF has {len(roots)} root links ({roots}); expected exactly one")
        return roots[0]

    def child_joints(self, link: str) -> list[Joint]:
        return [j for j in self.joints if j.parent == link]


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def _origin(element: ET.Element | None) -> Origin:
    if element is None:
        return Origin()
    return Origin(xyz=_floats(element.get("xyz"), (0.0, 0.0, 0.0)),  # type: ignore[arg-type]
                  rpy=_floats(element.get("rpy"), (0.0, 0.0, 0.0)))  # type: ignore[arg-type]


def _collision(element: ET.Element, base: Path, prefer_convex: bool, path: Path) -> Collision:
    origin = _origin(element.find("origin"))
    geometry = element.find("geometry")
    mesh = geometry.find("mesh") if geometry is not None else None
    box = geometry.find("box") if geometry is not None else None
    if mesh is not None:
        file = base / mesh.get("filename", "")
        # SAPIEN loads `<mesh>.convex.stl` when it exists; MuJoCo collides with convex hulls anyway.
        convex = file.with_name(file.name + ".convex.stl")
        if prefer_convex and convex.exists():
            file = convex
        if not file.exists():
            raise FileNotFoundError(f"{path}: collision mesh {file} does not exist")
        return Collision(origin, mesh=file)
    if box is not None:
        return Collision(origin, box=_floats(box.get("size"), ()))  # type: ignore[arg-type]
    raise ValueError(f"{path}: collision geometry other than mesh or box is not supported")


def parse_urdf(path: str | Path, prefer_convex: bool = True) -> Urdf:
    """Parse `path` into links and joints; mesh paths resolve relative to the file's folder."""
    path = Path(path)
    root = ET.parse(path).getroot()
    links: dict[str, Link] = {}
    for el in root.findall("link"):
        link = Link(el.get("name", ""))
        inertial = el.find("inertial")
        if inertial is not None:
            i = inertial.find("inertia")
            mass = inertial.find("mass")
            if i is None or mass is None:
                raise ValueError(f"{path}: link {link.name} has an inertial without mass or inertia")
            moments = tuple(float(i.get(k, "0")) for k in ("ixx", "iyy", "izz", "ixy", "ixz", "iyz"))
            link.inertial = Inertial(_origin(inertial.find("origin")), float(mass.get("value", "0")),
                                     moments)  # type: ignore[arg-type]
        link.collisions = [_collision(c, path.parent, prefer_convex, path) for c in el.findall("collision")]
        links[link.name] = link
    joints = []
    for el in root.findall("joint"):
        limit = el.find("limit")
        limits = None
        if limit is not None and el.get("type") in ("revolute", "prismatic"):
            limits = (float(limit.get("lower", "0")), float(limit.get("upper", "0")))
        axis = el.find("axis")
        joints.append(Joint(
            name=el.get("name", ""), type=el.get("type", ""),
            parent=el.find("parent").get("link", ""),  # type: ignore[union-attr]
            child=el.find("child").get("link", ""),  # type: ignore[union-attr]
            origin=_origin(el.find("origin")),
            axis=_floats(axis.get("xyz") if axis is not None else None, (1.0, 0.0, 0.0)),  # type: ignore[arg-type]
            limits=limits))
    for j in joints:
        if j.type not in ("revolute", "prismatic", "fixed"):
            raise ValueError(f"{path}: joint {j.name} has type {j.type!r}; expected revolute, prismatic or fixed")
        for name in (j.parent, j.child):
            if name not in links:
                raise ValueError(f"{path}: joint {j.name} names link {name!r}, which the file does not define")
    return Urdf(links, joints)
