"""An arm as an MJCF model, built from the URDF its description names (ManiSkill's own files).

Bodies, joints, inertials and collision shapes come from the URDF the arm's description
(configs/arm/<arm>.yaml) names, the file ManiSkill loads, so link lengths, masses and limits are
the same in both engines. What the URDF does not carry is added the way ManiSkill configures
its robots:

- joint PD drives as MuJoCo position actuators (stiffness, damping from tasks.layout), one
  per arm joint and one per gripper joint; their force limit is applied by the controller;
- two prismatic fingers coupled (ManiSkill: a stiff fixed tendon; here an equality constraint);
- gravity switched off for the arm (ManiSkill disables gravity on the robot's links to
  balance passive forces; here `gravcomp=1` cancels gravity on every robot body);
- gripper pad friction (see tasks.mujoco.contact) on the gripper's bodies;
- a site `tcp` at the description's TCP (tcp_link, moved by its tcp_offset);
- finger armature FINGER_ARMATURE: MuJoCo's soft contacts yield in proportion to the
  acceleration the drive would give the finger unopposed, and a bare 15 g Panda finger pushed
  with 30 N squeezed a cube's edge 3 mm deep and chattered; 0.1 kg of reflected inertia
  keeps a diagonal grasp within 0.6 mm (PhysX holds it rigidly) and barely slows the
  overdamped closing (kp 1e3, kd 1e2);
- arm armature ARM_ARMATURE, for a related reason: a saturated drive pushes with its full
  force limit, and on the bare wrist (7 g m^2 about the Panda's joint 7) that swung a grasped
  cube out of the fingers at the start of large steps. The slow pole of the overdamped drives
  (kp/kd = 10 /s) does not depend on inertia, so the arm's response to actions stays
  ManiSkill's (same-state rollouts agreed best at 0.1 among 0, 0.03 and 0.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dm_control import mjcf

from sim2real.robot.description import ArmDescription, load_arm
from sim2real.robot.rotations import quat_to_matrix
from tasks import layout
from tasks.mujoco.contact import SOLREF, set_finger_contacts, set_geom_defaults
from tasks.mujoco.meshes import stl_vertices
from tasks.mujoco.urdf import Joint, Link, Urdf, parse_urdf

FINGER_ARMATURE = 0.1
ARM_ARMATURE = 0.1
TCP_SITE = "tcp"


def gripper_bodies(urdf: Urdf, arm: ArmDescription) -> tuple[str, str]:
    """The two bodies that close on an object: the children of two finger joints, or the body a
    jaw joint carries and the one it is mounted on (the fixed jaw)."""
    joints = {j.name: j for j in urdf.joints}
    names = arm.gripper.joint_names
    if arm.gripper.kind == "two_prismatic_fingers":
        return joints[names[0]].child, joints[names[1]].child
    if arm.gripper.kind == "revolute_jaw":
        return joints[names[0]].parent, joints[names[0]].child
    raise ValueError(f"{arm.source}: gripper.kind {arm.gripper.kind!r}: the task scenes need a gripper")


def build_arm(arm: ArmDescription | str = "panda") -> mjcf.RootElement:
    """The arm as a standalone MJCF model named after it, base at its own origin (attach it where it stands)."""
    arm = load_arm(arm) if isinstance(arm, str) else arm
    urdf = parse_urdf(arm.urdf)
    if urdf.root != arm.base_link:
        raise ValueError(f"{arm.source}: base_link {arm.base_link!r} is not the root of {arm.urdf} ({urdf.root!r}); "
                         f"the task scenes mount the URDF's root")
    model = mjcf.RootElement(model=arm.name)
    model.compiler.angle = "radian"
    set_geom_defaults(model, robot=True)
    model.default.geom.rgba = (0.9, 0.9, 0.9, 1.0)
    # Joint limits as stiff as contacts (PhysX limits are hard; MuJoCo's default lets a
    # finger squeezed with 35 N sink 2 mm past its stop).
    model.default.joint.solreflimit = SOLREF
    _add_link(model, model.worldbody, urdf, urdf.root, meshes={}, gripper=set(arm.gripper.joint_names))
    _add_tcp(model, arm)
    _add_drives(model, arm)
    for body in gripper_bodies(urdf, arm):
        for geom in model.find("body", body).geom:
            set_finger_contacts(geom)
            geom.rgba = (0.3, 0.3, 0.3, 1.0)
    return model


def _add_tcp(model: mjcf.RootElement, arm: ArmDescription) -> None:
    """Site TCP_SITE at tcp_link (a body, or the site a frame-only link became) plus tcp_offset."""
    body = model.find("body", arm.tcp_link)
    if body is not None:
        body.add("site", name=TCP_SITE, pos=arm.tcp_offset, group=4)
        return
    frame = model.find("site", arm.tcp_link)
    if frame is None:
        raise ValueError(f"{arm.source}: tcp_link {arm.tcp_link!r} is neither a body nor a frame of the model")
    quat = np.array(frame.quat if frame.quat is not None else (1.0, 0.0, 0.0, 0.0), dtype=np.float64)
    pos = np.asarray(frame.pos if frame.pos is not None else np.zeros(3)) + quat_to_matrix(quat) @ arm.tcp_offset
    frame.parent.add("site", name=TCP_SITE, pos=pos, quat=quat, group=4)


def _add_link(model: mjcf.RootElement, parent: mjcf.Element, urdf: Urdf, name: str,
              meshes: dict[Path, str], gripper: set[str], joint: Joint | None = None) -> None:
    link = urdf.links[name]
    if (joint is not None and joint.type == "fixed" and link.inertial is None and not link.collisions
            and not urdf.child_joints(name)):
        # A frame-only leaf link (the TCP, the finger pads): a site keeps its name and pose.
        parent.add("site", name=name, pos=joint.origin.xyz, quat=joint.origin.quat(), group=4)
        return
    attrs = {"name": name, "gravcomp": 1.0}
    if joint is not None:
        attrs.update(pos=joint.origin.xyz, quat=joint.origin.quat())
    body = parent.add("body", **attrs)
    if joint is not None and joint.type != "fixed":
        _add_joint(body, joint, joint.name in gripper)
    _add_inertial(body, link)
    for k, c in enumerate(link.collisions):
        geom = {"name": f"{name}_collision{k}", "pos": c.origin.xyz, "quat": c.origin.quat()}
        if c.mesh is not None:
            if c.mesh not in meshes:
                meshes[c.mesh] = f"mesh_{name}_{k}"
                # Vertices only: MuJoCo builds the convex hull, which is what it collides with.
                model.asset.add("mesh", name=meshes[c.mesh], vertex=stl_vertices(c.mesh).ravel())
            body.add("geom", type="mesh", mesh=meshes[c.mesh], **geom)
        else:
            assert c.box is not None
            body.add("geom", type="box", size=tuple(s / 2 for s in c.box), **geom)
    for child in urdf.child_joints(name):
        _add_link(model, body, urdf, child.child, meshes, gripper, child)


def _add_joint(body: mjcf.Element, joint: Joint, is_gripper: bool) -> None:
    attrs = {"name": joint.name, "axis": joint.axis, "type": "hinge" if joint.type == "revolute" else "slide"}
    if joint.limits is not None:
        attrs.update(limited=True, range=joint.limits)
    attrs["armature"] = FINGER_ARMATURE if is_gripper else ARM_ARMATURE
    body.add("joint", **attrs)


def _add_inertial(body: mjcf.Element, link: Link) -> None:
    if link.inertial is None:
        return
    if any(link.inertial.origin.rpy):
        raise ValueError(f"link {link.name}: rotated inertial frames are not supported (MuJoCo's fullinertia "
                         f"cannot be combined with a frame rotation)")
    body.add("inertial", pos=link.inertial.origin.xyz, mass=link.inertial.mass, fullinertia=link.inertial.inertia)


def _add_drives(model: mjcf.RootElement, arm: ArmDescription) -> None:
    """Joint PD drives (stiffness, damping) as position actuators.

    ManiSkill's drives clip their force at the force limit. A force range on these
    actuators would clip the explicit force while MuJoCo still integrated the damping
    implicitly, and the light wrist joints chattered between the two limits; the limit is
    applied per physics step by tasks.mujoco.control.drive_command instead.
    """
    for name in arm.joint_names:
        model.actuator.add("position", name=name, joint=name, kp=layout.ARM_STIFFNESS, kv=layout.ARM_DAMPING)
    fingers = arm.gripper.joint_names
    for name in fingers:
        model.actuator.add("position", name=name, joint=name, kp=layout.GRIPPER_STIFFNESS, kv=layout.GRIPPER_DAMPING)
    if arm.gripper.kind == "two_prismatic_fingers":
        # The second finger mirrors the first (ManiSkill's mimic tendon).
        model.equality.add("joint", name="finger_coupling", joint1=fingers[1], joint2=fingers[0],
                           polycoef=(0, 1, 0, 0, 0))
