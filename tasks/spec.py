"""What each task is, independent of the engine that simulates it.

A `TaskSpec` names the task's observation features, its episode length and success rule;
`task_contract()` turns it into the `Contract` that every backend must produce, so the
contract is identical across backends by construction. `TaskConfig` is the Hydra
`task/` group's schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from sim2real.contract import Contract, Feature
from sim2real.robot.arm_yaml import ArmYaml
from sim2real.robot.description import GRIPPER_JOINTS, arm_config_path
from tasks import layout

TASKS = ("push_cube", "pick_cube", "stack_cube", "open_drawer")
BACKENDS = ("maniskill", "mujoco")
OBS_MODES = ("state", "rgb")
CONTROL_MODES = ("pd_ee_delta_pos", "pd_joint_delta_pos")


@dataclass(frozen=True)
class ArmShape:
    """What an arm's description fixes in a task's contract: joint counts and the control modes."""

    arm: str
    arm_joints: int
    gripper_joints: int
    modes: tuple[str, ...]

    def action_dim(self, control_mode: str) -> int:
        """3 TCP deltas or one delta per arm joint, then one gripper command."""
        return (3 if control_mode == "pd_ee_delta_pos" else self.arm_joints) + 1

    def proprio(self) -> dict[str, Feature]:
        """Proprioception, observed in every obs mode: arm then gripper joints, and the TCP pose."""
        joints = self.arm_joints + self.gripper_joints
        return {"qpos": Feature((joints,)), "qvel": Feature((joints,)),
                "tcp_pose": Feature((7,))}  # position (3) + quaternion (w, x, y, z)


def arm_shape(arm: str) -> ArmShape:
    """The joint counts and modes of configs/arm/<arm>.yaml, read without its URDF (no simulator import)."""
    raw = ArmYaml.read(arm_config_path(arm))
    gripper = raw.section("gripper")
    kind = gripper.choice("kind", tuple(GRIPPER_JOINTS))
    return ArmShape(arm, len(raw.strings("joints")), GRIPPER_JOINTS[kind][0],
                    raw.section("control").strings("modes"))



@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Args:
        name: task name (the `task/` preset).
        episode_length: control steps before `truncated`.
        success: the success rule, in words (the code is each backend's `evaluate`).
        objects: what `obj_pose` and `goal_pos` mean in this task.
    """

    name: str
    episode_length: int
    success: str
    objects: str

    @property
    def privileged(self) -> dict[str, Feature]:
        """Object state features: observed in `state` mode, hidden (expert-only) in `rgb` mode."""
        return {"obj_pose": Feature((7,))}

    @property
    def task_features(self) -> dict[str, Feature]:
        """Task features observed in every obs mode (the goal is known to the policy)."""
        return {"goal_pos": Feature((3,))}


SPECS: dict[str, TaskSpec] = {
    "push_cube": TaskSpec(
        "push_cube", 50,
        success=f"cube xy within {layout.PUSH_GOAL_RADIUS} m of the goal xy and the cube still on the table "
                f"(z < half size + 5 mm)",
        objects="obj_pose: the cube; goal_pos: centre of the goal disc on the table"),
    "pick_cube": TaskSpec(
        "pick_cube", 50,
        success=f"cube centre within {layout.PICK_GOAL_THRESH} m of the goal and every arm joint slower than "
                f"{layout.ROBOT_STATIC_QVEL} rad/s",
        objects="obj_pose: the cube; goal_pos: the goal point in the air"),
    "stack_cube": TaskSpec(
        "stack_cube", 50,
        success="cube A resting on cube B (xy offset <= half diagonal + 5 mm, z offset = 2 half sizes +- 5 mm), "
                "cube A static and not grasped",
        objects="obj_pose: cube A (to be stacked); goal_pos: centre of cube B"),
    "open_drawer": TaskSpec(
        "open_drawer", 50,
        success=f"drawer opened at least {layout.DRAWER_SUCCESS_OPENING:.2f} m "
                f"({layout.DRAWER_SUCCESS_OPENING / layout.DRAWER_TRAVEL:.0%} of its travel)",
        objects="obj_pose: the drawer handle; goal_pos: where the handle is when the drawer is open enough"),
}


def task_spec(name: str) -> TaskSpec:
    if name not in SPECS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return SPECS[name]


def episode_length(task: str, arm: str = "panda") -> int:
    """Control steps per episode of `task` on `arm`: the arm's own length (a slow arm's is longer,
    tasks.layout.ArmSetup.episode_length), else the task's."""
    setup = layout.ARM_SETUPS.get(arm)
    return (setup.episode_length if setup is not None else 0) or task_spec(task).episode_length


def task_contract(task: str, obs_mode: str = "state", control_mode: str = "pd_ee_delta_pos",
                  image_size: int = 64, arm: str = "panda") -> Contract:
    """The observation/action contract of `task` on `arm`, the same on every backend.

    `state` observes proprioception, object poses and the goal; `rgb` replaces the object
    poses by one camera image (3, image_size, image_size), uint8. The arm sets the joint
    counts (qpos, qvel, joint actions) and which control modes exist.
    """
    spec = task_spec(task)
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r}; expected one of {OBS_MODES}")
    if control_mode not in CONTROL_MODES:
        raise ValueError(f"control_mode={control_mode!r}; expected one of {CONTROL_MODES}")
    shape = arm_shape(arm)
    if control_mode not in shape.modes:
        raise ValueError(f"control_mode={control_mode!r} is not a mode of arm {arm!r} (configs/arm/{arm}.yaml "
                         f"control.modes: {', '.join(shape.modes)})")
    features = shape.proprio()
    if obs_mode == "state":
        features.update(spec.privileged)
    features.update(spec.task_features)
    if obs_mode == "rgb":
        features["rgb"] = Feature((3, image_size, image_size), kind="rgb")
    return Contract(features=features, action_dim=shape.action_dim(control_mode), control_mode=control_mode,
                    control_freq=layout.CONTROL_FREQ, arm=arm)


def state_features(task: str, arm: str = "panda") -> dict[str, Feature]:
    """Every state feature of `task` (what experts and datasets see), whatever the obs mode."""
    return dict(task_contract(task, "state", arm_shape(arm).modes[0], arm=arm).features)


@dataclass
class TaskConfig:
    """The Hydra `task/` group: which task and how it is observed and controlled.

    Args:
        name: one of TASKS.
        obs_mode: "state" or "rgb".
        control_mode: "pd_ee_delta_pos" (end-effector delta position + gripper) or
            "pd_joint_delta_pos" (one delta per arm joint + gripper; the only mode of an arm
            without end-effector control, such as the SO-100); "" (the default): the arm's first
            mode in its description (the Panda's: pd_ee_delta_pos).
        image_size: camera image side in pixels for obs_mode=rgb.
        episode_length: control steps per episode; 0 takes the task's default.
        arm: the robot (configs/arm/<arm>.yaml) whose scene, joints and actions the task uses;
            tasks.layout.ARM_SETUPS says which tasks each arm has.
    """

    name: str = "push_cube"
    obs_mode: str = "state"
    control_mode: str = ""
    image_size: int = 64
    episode_length: int = 0
    arm: str = "panda"

    @property
    def mode(self) -> str:
        """The control mode in use: control_mode, or the arm's first one when it is ""."""
        return self.control_mode or arm_shape(self.arm).modes[0]


ConfigStore.instance().store(group="task", name="schema", node=TaskConfig)
