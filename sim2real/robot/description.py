"""One arm, described once: `ArmDescription`, read by `load_arm` from `configs/arm/<name>.yaml`.

The YAML names the URDF and says what the URDF cannot: which joints are the arm, where the
TCP is, the rest pose, how a gripper command maps to joint positions, which IK the arm can
do, its control rate and modes, and joint limits tighter than the URDF's. Everything is
checked against the URDF when loaded, so a wrong name fails here, naming the YAML file and
field, rather than as a silent zero in a consumer.

Gripper command convention: a in [-1, 1], +1 open and -1 closed. This is the convention of
ManiSkill's Panda controller and of the tasks' action (its last dim), which the description
must reproduce; `Gripper.joint_targets` is linear in a.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.robot.arm_yaml import ArmYaml
from sim2real.robot.kinematics import (
    MOVING_JOINT_TYPES,
    IkSolution,
    JointLimit,
    KinematicChain,
    UrdfTree,
    joint_limit,
    read_urdf,
)

ARM_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "arm"
GRIPPER_KINDS = ("two_prismatic_fingers", "revolute_jaw", "none")
# How many joints, of which URDF type, each gripper kind has.
GRIPPER_JOINTS = {"two_prismatic_fingers": (2, "prismatic"), "revolute_jaw": (1, "revolute"), "none": (0, "")}
IK_MODES = ("pose", "position")
# From a start far from the target (the rest pose, say) a full DLS step overshoots and a joint on
# its limit swallows part of every step; both made the stall rule give up on reachable targets.
IK_DEFAULTS: dict[str, float | int | bool] = {"lock_at_limits": True, "max_step": 0.1, "iterations": 200}
# ManiSkill controller names; the ee ones need `control.ee_delta`, and *_pose needs ik: pose.
# How the arm's ROS 2 controller takes position commands (the policy node's command_interface):
# a JointTrajectory, a Float64MultiArray of targets applied at once, or FollowJointTrajectory goals.
COMMAND_INTERFACES = ("trajectory", "forward", "action")
CONTROL_MODES = ("pd_ee_delta_pos", "pd_ee_delta_pose", "pd_joint_delta_pos", "pd_joint_pos",
                 "pd_joint_target_delta_pos")


@dataclass(frozen=True)
class Gripper:
    """A gripper's joints and the linear map between a command a in [-1 closed, +1 open] and them.

    Args:
        kind: "two_prismatic_fingers" (both fingers get the same target), "revolute_jaw", or "none".
        joint_names: its URDF joints (2, 1 or 0 by kind).
        open: joint position for a = +1 (within the URDF's limits).
        closed: joint target for a = -1. It may lie past the URDF limit on the closing side:
            the Panda's does (-0.01 < 0.0) so that the drive keeps squeezing a grasped object.
        rest: the command at the rest pose.
    """

    kind: str
    joint_names: tuple[str, ...] = ()
    open: float = 0.0
    closed: float = 0.0
    rest: float = 1.0

    def joint_targets(self, command: float) -> np.ndarray:
        """Joint targets [len(joint_names)] for the command (clipped to [-1, 1])."""
        a = float(np.clip(command, -1.0, 1.0))
        return np.full(len(self.joint_names), self.closed + (a + 1.0) / 2.0 * (self.open - self.closed))

    def command(self, positions: Sequence[float] | np.ndarray) -> float:
        """The command in [-1, 1] that the joint positions correspond to (fingers averaged)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1)
        if self.kind == "none":
            raise ValueError("this arm has no gripper (gripper.kind: none): no command to read")
        if positions.shape != (len(self.joint_names),):
            raise ValueError(f"gripper positions: expected {len(self.joint_names)} values "
                             f"({', '.join(self.joint_names)}), got {positions.size}")
        a = 2.0 * (float(positions.mean()) - self.closed) / (self.open - self.closed) - 1.0
        return float(np.clip(a, -1.0, 1.0))


@dataclass(frozen=True)
class Control:
    """How the arm is driven.

    Args:
        rate_hz: control decisions per second.
        modes: the ManiSkill controller names the arm supports, the default first.
        joint_delta: radians each arm joint target moves per step for action +-1 (pd_joint_delta_pos).
        ee_delta: metres the TCP target moves per step for action +-1 (pd_ee_delta_*); None without an ee mode.
        command_interface: how its ROS 2 controller takes commands by default (COMMAND_INTERFACES).
    """

    rate_hz: float
    modes: tuple[str, ...]
    joint_delta: float
    ee_delta: float | None = None
    command_interface: str = "trajectory"


@dataclass(frozen=True, eq=False)  # arrays: compare descriptions by identity, not field by field
class ArmDescription:
    """An arm: its URDF chain base_link -> tcp_link, rest pose, gripper, IK mode, control and limits.

    The TCP is `tcp_offset` [3] (metres, in tcp_link's frame; zero for most arms) from tcp_link.
    `lower`, `upper`, `velocity_limits` [n] are the URDF's, tightened by the YAML's `limits`
    (a URDF velocity of 0, as in the SO-100's, means none given and becomes inf). FK, the
    Jacobian and IK run on `chain`; IK clamps to these limits.
    """

    name: str
    source: Path
    urdf: Path
    joint_names: tuple[str, ...]
    base_link: str
    tcp_link: str
    tcp_offset: np.ndarray
    rest_qpos: np.ndarray
    gripper: Gripper
    ik_mode: str
    control: Control
    lower: np.ndarray
    upper: np.ndarray
    velocity_limits: np.ndarray
    chain: KinematicChain

    def __post_init__(self) -> None:
        for array in (self.tcp_offset, self.rest_qpos, self.lower, self.upper, self.velocity_limits):
            array.flags.writeable = False

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def control_rate_hz(self) -> float:
        return self.control.rate_hz

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and quaternion (w, x, y, z) [4] in the base frame for arm joints q [n]."""
        return self.chain.fk(q)

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian [6, n] of the TCP (linear rows, then angular) in the base frame."""
        return self.chain.jacobian(q)[0]

    def solve_ik(self, q: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray | None = None,
                 **ik_kwargs: float | int | bool) -> IkSolution:
        """Damped least squares IK from q, within this arm's limits, in its IK mode.

        "pose": 6-D; target_quat None holds the TCP orientation at q (ManiSkill's ee-delta
        behaviour). "position": 3-D; an arm with fewer than 6 joints cannot also hold an
        orientation, so a target_quat is refused. `ik_kwargs` go to KinematicChain.solve_ik
        (damping, iterations, tol, ...); the defaults here solve for distant targets too
        (IK_DEFAULTS), where the chain's own defaults track the tasks' small TCP deltas.
        """
        ik_kwargs = {**IK_DEFAULTS, **ik_kwargs}
        if self.ik_mode == "position":
            if target_quat is not None:
                raise ValueError(f"{self.name}: IK is position-only (ik: position in {self.source}); "
                                 f"got a target orientation")
        elif target_quat is None:
            target_quat = self.fk(q)[1]
        return self.chain.solve_ik(q, target_pos, target_quat, limits=(self.lower, self.upper),
                                   **ik_kwargs)  # type: ignore[arg-type]


def arm_config_path(name_or_path: str | Path) -> Path:
    """`configs/arm/<name>.yaml` for a bare name; a path (with a folder or .yaml) as given."""
    text = str(name_or_path)
    if "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
    else:
        path = ARM_CONFIG_DIR / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ARM_CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"arm description {path} not found (arms in {ARM_CONFIG_DIR}: {', '.join(known)})")
    return path


def arm_name(selection: str | Mapping[str, Any]) -> str:
    """The arm a config selects: a name ("so100") or a YAML path as given, or the node the Hydra
    group `arm/` composes for `arm=<name>` (configs/arm/<name>.yaml's content).

    The composed node must equal its file: the description is read from the file by `load_arm`,
    so an edit on the command line (`arm.control.rate_hz=10`) would be ignored, and is refused.
    """
    if isinstance(selection, (str, Path)):
        return str(selection)
    if not isinstance(selection, Mapping) or not isinstance(selection.get("name"), str):
        raise ValueError(f"arm: expected an arm name (arm=so100) or the arm/ group's node with a name; got "
                         f"{selection!r}")
    name = str(selection["name"])
    path = arm_config_path(name)
    data = ArmYaml.read(path).data
    if dict(selection) != data:
        changed = sorted(k for k in set(selection) | set(data) if selection.get(k) != data.get(k))
        raise ValueError(f"arm.{changed[0] if changed else 'name'}: differs from {path}; an arm is selected whole "
                         f"(arm={name}): edit its file, or copy it to configs/arm/<new name>.yaml and select that")
    return name


def arm_urdf_path(name_or_path: str | Path) -> Path:
    """The URDF an arm description names, located without parsing it (or importing its package)."""
    return ArmYaml.read(arm_config_path(name_or_path)).urdf_path()


def load_arm(name_or_path: str | Path, urdf: str | Path | None = None) -> ArmDescription:
    """Read and check an arm description: a name in configs/arm/ ("panda") or a YAML path.

    `urdf` replaces the file the YAML names (a copy of it on a machine without its package, or a
    calibrated one): everything else, the tightened limits and the TCP offset included, still
    comes from the YAML, and is checked against that file.
    """
    raw = ArmYaml.read(arm_config_path(name_or_path))
    raw.allow_only(("name", "urdf", "joints", "base_link", "tcp_link", "tcp_offset", "rest", "gripper", "ik",
                    "control", "limits"))
    if urdf is not None and not Path(urdf).is_file():
        raise FileNotFoundError(f"urdf {urdf}: not a file (it replaces the URDF {raw.path} names)")
    urdf = Path(urdf) if urdf is not None else raw.urdf_path()
    tree = read_urdf(urdf)
    base_link, tcp_link = raw.string("base_link"), raw.string("tcp_link")
    joint_names = _check_chain(raw, tree, base_link, tcp_link)
    gripper = _read_gripper(raw, tree, joint_names)
    chain = KinematicChain.from_urdf(urdf, base_link, tcp_link, gripper.joint_names)
    tcp_offset = raw.numbers("tcp_offset", 3) if "tcp_offset" in raw.data else np.zeros(3)
    if tcp_offset.any():
        # The TCP sits at a fixed offset in tcp_link's frame (between the jaws, say): part of the chain's tail.
        tail = chain.tail.copy()
        tail[:3, 3] += tail[:3, :3] @ tcp_offset
        chain = dataclasses.replace(chain, tail=tail)
    # `limits` may tighten the arm's and the gripper's joints alike. URDF velocity 0 means "not
    # given" (the SO-100's): unbounded until the YAML tightens it.
    fingers = [chain.gripper_limits[n] for n in gripper.joint_names]
    all_lower, all_upper, all_velocity = raw.tightened_limits(
        joint_names + gripper.joint_names, np.r_[chain.lower, [f.lower for f in fingers]],
        np.r_[chain.upper, [f.upper for f in fingers]],
        np.where(np.r_[chain.velocity_limits, [f.velocity for f in fingers]] > 0,
                 np.r_[chain.velocity_limits, [f.velocity for f in fingers]], math.inf), urdf)
    n = len(joint_names)
    lower, upper, velocity = all_lower[:n], all_upper[:n], all_velocity[:n]
    # The chain carries the described limits, so IK and the safety filter built on it trust them.
    chain = dataclasses.replace(chain, lower=lower, upper=upper, velocity_limits=velocity, gripper_limits={
        name: JointLimit(float(all_lower[n + i]), float(all_upper[n + i]), float(all_velocity[n + i]))
        for i, name in enumerate(gripper.joint_names)})
    rest = raw.numbers("rest", len(joint_names))
    for i, (value, lo, hi) in enumerate(zip(rest, lower, upper)):
        if not lo <= value <= hi:
            raise raw.error(f"rest[{i}]", f"a position of {joint_names[i]!r} within [{lo}, {hi}]", float(value))
    ik_mode = raw.choice("ik", IK_MODES)
    if ik_mode == "pose" and len(joint_names) < 6:
        raise raw.error("ik", f"'position' for an arm with {len(joint_names)} joints (pose IK needs 6)", ik_mode)
    control = _read_control(raw, ik_mode)
    return ArmDescription(name=raw.string("name", default=raw.path.stem), source=raw.path, urdf=urdf,
                          joint_names=joint_names, base_link=base_link, tcp_link=tcp_link,
                          tcp_offset=tcp_offset, rest_qpos=rest,
                          gripper=gripper, ik_mode=ik_mode, control=control, lower=lower, upper=upper,
                          velocity_limits=velocity, chain=chain)


def _check_chain(raw: ArmYaml, tree: UrdfTree, base_link: str, tcp_link: str) -> tuple[str, ...]:
    """The YAML's `joints`, checked to be exactly the moving joints from base_link to tcp_link, in order."""
    for field, link in (("base_link", base_link), ("tcp_link", tcp_link)):
        if link not in tree.links:
            raise raw.error(field, f"a link of {tree.path}", link)
    path = tree.path_between(base_link, tcp_link)
    if path is None:
        raise raw.error("tcp_link", f"a link downstream of base_link {base_link!r} in {tree.path}", tcp_link)
    names = raw.strings("joints")
    for i, name in enumerate(names):
        if name not in tree.joints:
            movable = [j.name for j in tree.joints.values() if j.type in MOVING_JOINT_TYPES]
            raise raw.error(f"joints[{i}]", f"a joint of {tree.path} (its moving joints: {', '.join(movable)})", name)
    moving = tuple(j.name for j in path if j.type in MOVING_JOINT_TYPES)
    if names != moving:
        raise raw.error("joints", f"the moving joints from {base_link!r} to {tcp_link!r}, in order: {list(moving)}",
                        list(names))
    return names


def _read_gripper(raw: ArmYaml, tree: UrdfTree, arm_joints: tuple[str, ...]) -> Gripper:
    section = raw.section("gripper")
    kind = section.choice("kind", GRIPPER_KINDS)
    count, joint_type = GRIPPER_JOINTS[kind]
    if kind == "none":
        section.allow_only(("kind",))
        return Gripper("none")
    names = section.strings("joints")
    if len(names) != count:
        raise section.error("joints", f"{count} {joint_type} joint(s) for kind {kind!r}", list(names))
    for i, name in enumerate(names):
        joint = tree.joints.get(name)
        if joint is None or joint.type != joint_type or name in arm_joints:
            raise section.error(f"joints[{i}]", f"a {joint_type} joint of {tree.path} off the arm chain", name)
    open_, closed = section.number("open"), section.number("closed")
    for name in names:
        limit = joint_limit(tree.joints[name].element, tree.path)
        if not limit.lower <= open_ <= limit.upper:
            raise section.error("open", f"a position of {name!r} within the URDF's [{limit.lower}, {limit.upper}]",
                                open_)
    if closed == open_:
        raise section.error("closed", f"a target different from open ({open_})", closed)
    rest = section.number("rest", default=1.0)
    if not -1.0 <= rest <= 1.0:
        raise section.error("rest", "a command in [-1 closed, 1 open]", rest)
    section.allow_only(("kind", "joints", "open", "closed", "rest"))
    return Gripper(kind, names, open_, closed, rest)


def _read_control(raw: ArmYaml, ik_mode: str) -> Control:
    section = raw.section("control")
    section.allow_only(("rate_hz", "modes", "joint_delta", "ee_delta", "command_interface"))
    rate = section.number("rate_hz")
    if not rate > 0:
        raise section.error("rate_hz", "a positive frequency", rate)
    modes = section.strings("modes")
    for i, mode in enumerate(modes):
        if mode not in CONTROL_MODES:
            raise section.error(f"modes[{i}]", f"one of {', '.join(CONTROL_MODES)}", mode)
        if mode == "pd_ee_delta_pose" and ik_mode != "pose":
            raise section.error(f"modes[{i}]", "an ee-position or joint mode (this arm's IK is position-only)", mode)
    if not modes:
        raise section.error("modes", "at least one control mode", [])
    has_ee = any(m.startswith("pd_ee") for m in modes)
    if not has_ee and "ee_delta" in section.data:
        raise section.error("ee_delta", "no value: no pd_ee_* mode is listed", section.data["ee_delta"])
    joint_delta = section.number("joint_delta")
    ee_delta = section.number("ee_delta") if has_ee else None
    for field, value in (("joint_delta", joint_delta), ("ee_delta", ee_delta)):
        if value is not None and not value > 0:
            raise section.error(field, "a positive step per action unit", value)
    interface = section.choice("command_interface", COMMAND_INTERFACES) if "command_interface" in section.data \
        else "trajectory"
    return Control(rate, modes, joint_delta, ee_delta, interface)


def arm_command_interface(name_or_path: str | Path) -> str:
    """The arm's default command interface (control.command_interface), read without its URDF."""
    control = ArmYaml.read(arm_config_path(name_or_path)).section("control")
    if "command_interface" not in control.data:
        return "trajectory"
    return control.choice("command_interface", COMMAND_INTERFACES)
