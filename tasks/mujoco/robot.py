"""The Franka Panda as an MJCF model, built from ManiSkill's own URDF.

Bodies, joints, inertials and collision shapes come from `panda_v2.urdf` (the file ManiSkill
loads), so link lengths, masses and limits are the same in both engines. What the URDF does
not carry is added the way ManiSkill configures its Panda:

- joint PD drives as MuJoCo position actuators (stiffness, damping from tasks.layout), one
  per arm joint and one per finger; their force limit is applied by the controller;
- the two fingers coupled (ManiSkill: a stiff fixed tendon; here an equality constraint);
- gravity switched off for the arm (ManiSkill disables gravity on the robot's links to
  balance passive forces; here `gravcomp=1` cancels gravity on every robot body);
- gripper pad friction (see tasks.mujoco.contact);
- finger armature FINGER_ARMATURE: MuJoCo's soft contacts yield in proportion to the
  acceleration the drive would give the finger unopposed, and a bare 15 g finger pushed
  with 30 N squeezed a cube's edge 3 mm deep and chattered; 0.1 kg of reflected inertia
  keeps a diagonal grasp within 0.6 mm (PhysX holds it rigidly) and barely slows the
  overdamped closing (kp 1e3, kd 1e2);
- arm armature ARM_ARMATURE, for a related reason: a saturated drive pushes with its full
  force limit, and on the bare wrist (7 g m^2 about joint 7) that swung a grasped cube out
  of the fingers at the start of large steps. The slow pole of the overdamped drives
  (kp/kd = 10 /s) does not depend on inertia, so the arm's response to actions stays
  ManiSkill's (same-state rollouts agreed best at 0.1 among 0, 0.03 and 0.1).
"""

from __future__ import annotations

from pathlib import Path

from dm_control import mjcf

from sim2real.robot.arm_model import ARM_JOINT_NAMES, FINGER_JOINT_NAMES, TCP_LINK
from sim2real.robot.description import arm_urdf_path
from tasks import layout
from tasks.mujoco.contact import SOLREF, set_finger_contacts, set_geom_defaults
from tasks.mujoco.meshes import stl_vertices
from tasks.mujoco.urdf import Joint, Link, Urdf, parse_urdf

FINGER_BODIES = ("panda_leftfinger", "panda_rightfinger")
HAND_BODY = "panda_hand"
FINGER_ARMATURE = 0.1
ARM_ARMATURE = 0.1
TCP_SITE = TCP_LINK


def build_panda(urdf_path: str | Path | None = None) -> mjcf.RootElement:
    """The Panda as a standalone MJCF model, base at its own origin (attach it where it stands).

    Args:
        urdf_path: the URDF to build from (default: ManiSkill's panda_v2.urdf).
    """
    urdf = parse_urdf(urdf_path or arm_urdf_path("panda"))
    model = mjcf.RootElement(model="panda")
    model.compiler.angle = "radian"
    set_geom_defaults(model, robot=True)
    model.default.geom.rgba = (0.9, 0.9, 0.9, 1.0)
    # Joint limits as stiff as contacts (PhysX limits are hard; MuJoCo's default lets a
    # finger squeezed with 35 N sink 2 mm past its stop).
    model.default.joint.solreflimit = SOLREF
    _add_link(model, model.worldbody, urdf, urdf.root, meshes={})
    tcp = model.find("site", TCP_SITE)
    if tcp is None or tcp.parent.name != HAND_BODY or tuple(tcp.pos) != (0.0, 0.0, layout.TCP_OFFSET):
        raise ValueError(f"URDF: expected link {TCP_SITE} fixed {layout.TCP_OFFSET} m along {HAND_BODY}'s z axis "
                         f"(tasks.layout.TCP_OFFSET)")
    _add_drives(model)
    for body in FINGER_BODIES:
        for geom in model.find("body", body).geom:
            set_finger_contacts(geom)
            geom.rgba = (0.3, 0.3, 0.3, 1.0)
    return model


def _add_link(model: mjcf.RootElement, parent: mjcf.Element, urdf: Urdf, name: str,
              meshes: dict[Path, str], joint: Joint | None = None) -> None:
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
        _add_joint(body, joint)
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
        _add_link(model, body, urdf, child.child, meshes, child)


def _add_joint(body: mjcf.Element, joint: Joint) -> None:
    attrs = {"name": joint.name, "axis": joint.axis, "type": "hinge" if joint.type == "revolute" else "slide"}
    if joint.limits is not None:
        attrs.update(limited=True, range=joint.limits)
    attrs["armature"] = FINGER_ARMATURE if joint.name in FINGER_JOINT_NAMES else ARM_ARMATURE
    body.add("joint", **attrs)


def _add_inertial(body: mjcf.Element, link: Link) -> None:
    if link.inertial is None:
        return
    if any(link.inertial.origin.rpy):
        raise ValueError(f"link {link.name}: rotated inertial frames are not supported (MuJoCo's fullinertia "
                         f"cannot be combined with a frame rotation)")
    body.add("inertial", pos=link.inertial.origin.xyz, mass=link.inertial.mass, fullinertia=link.inertial.inertia)


def _add_drives(model: mjcf.RootElement) -> None:
    """Joint PD drives (stiffness, damping) as position actuators.

    ManiSkill's drives clip their force at the force limit. A force range on these
    actuators would clip the explicit force while MuJoCo still integrated the damping
    implicitly, and the light wrist joints chattered between the two limits; the limit is
    applied per physics step by tasks.mujoco.control.drive_command instead.
    """
    for name in ARM_JOINT_NAMES:
        model.actuator.add("position", name=name, joint=name, kp=layout.ARM_STIFFNESS, kv=layout.ARM_DAMPING)
    for name in FINGER_JOINT_NAMES:
        model.actuator.add("position", name=name, joint=name, kp=layout.GRIPPER_STIFFNESS, kv=layout.GRIPPER_DAMPING)
    # The right finger mirrors the left one (ManiSkill's mimic tendon).
    model.equality.add("joint", name="finger_coupling", joint1=FINGER_JOINT_NAMES[1], joint2=FINGER_JOINT_NAMES[0],
                       polycoef=(0, 1, 0, 0, 0))
