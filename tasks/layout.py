"""Scene geometry and task rules shared by every backend.

Both engines build their scenes from these numbers, so a task means the same thing in
ManiSkill3 and in MuJoCo. Frame: ManiSkill's table-top frame. The table surface is
z = 0, +x points away from the robot, the Panda base sits at `ROBOT_BASE_POS` facing +x.
Lengths are in metres, angles in radians, quaternions are (w, x, y, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# --- robot ---------------------------------------------------------------------------------
ROBOT_BASE_POS = (-0.615, 0.0, 0.0)
# ManiSkill's Panda "rest" keyframe: 7 arm joints, then the two finger joints (open).
ROBOT_REST_QPOS = (0.0, math.pi / 8, 0.0, -5 * math.pi / 8, 0.0, 3 * math.pi / 4, math.pi / 4, 0.04, 0.04)
ROBOT_INIT_QPOS_NOISE = 0.02  # std of Gaussian noise on the 7 arm joints at reset
ARM_JOINTS = 7
FINGER_JOINTS = 2
FINGER_OPEN = 0.04   # finger joint position, open
FINGER_CLOSED = -0.01  # commanded finger position for action -1 (ManiSkill's lower limit)
# Joint PD drive of ManiSkill's Panda (per joint, stiffness N·m/rad, damping N·m·s/rad, force N·m).
ARM_STIFFNESS, ARM_DAMPING, ARM_FORCE_LIMIT = 1e3, 1e2, 100.0
GRIPPER_STIFFNESS, GRIPPER_DAMPING, GRIPPER_FORCE_LIMIT = 1e3, 1e2, 100.0
# The tool centre point: between the fingertips, 0.1034 m along the hand's z axis.
TCP_OFFSET = 0.1034

# --- control -------------------------------------------------------------------------------
CONTROL_FREQ = 20.0  # decisions per second
SIM_FREQ = 100.0     # physics steps per second in ManiSkill (5 per control step)
EE_DELTA_POS_LIMIT = 0.1     # action +-1 moves the end-effector target by +-0.1 m per step
JOINT_DELTA_POS_LIMIT = 0.1  # action +-1 moves each joint target by +-0.1 rad per step

# --- objects -------------------------------------------------------------------------------
CUBE_HALF_SIZE = 0.02
# Cubes spawn with x, y uniform in [-0.1, 0.1]. Every spawn half range (cubes, goals, the
# cabinet) is multiplied by the domain's init_range_scale, about the region's centre.
CUBE_SPAWN_HALF_RANGE = 0.1

PUSH_GOAL_RADIUS = 0.1
PUSH_GOAL_OFFSET_X = 0.1 + PUSH_GOAL_RADIUS  # goal = cube xy + (0.2, 0)
PUSH_GOAL_Z = 1e-3  # the goal disc sits 1 mm above the table

PICK_GOAL_THRESH = 0.025
PICK_MAX_GOAL_HEIGHT = 0.3  # goal z = cube_half + U[0, 0.3]
ROBOT_STATIC_QVEL = 0.2     # max |arm joint velocity| for "the robot is static"

STACK_XY_TOL = 0.005        # + the cube's half diagonal
STACK_Z_TOL = 0.005
STACK_STATIC_LIN = 1e-2     # cube A linear speed below this (m/s)
STACK_STATIC_ANG = 0.5      # cube A angular speed below this (rad/s)
STACK_MIN_SEPARATION = math.hypot(CUBE_HALF_SIZE, CUBE_HALF_SIZE) * 2 + 0.002
# Stack spawn: cube B is redrawn until it clears cube A; after this many misses A is redrawn
# too (in a small spawn square, some A positions leave no room for B) ...
STACK_SPAWN_B_ONLY_TRIES = 100
# ... and after this many the spawn square is declared too small for two cubes.
STACK_SPAWN_MAX_TRIES = 1000

# --- drawer (built from boxes; no downloaded assets) ----------------------------------------
# A cabinet shell (top, two sides, back) on the table with one drawer sliding along -x
# (towards the robot) on a prismatic joint, and a vertical fin handle on the drawer front
# that a top-down parallel gripper (fingers closing along y) can grasp.
CABINET_CENTER_X = 0.15            # nominal; spawn adds U[-0.05, 0.05] in x and y
CABINET_SPAWN_HALF_RANGE = 0.05
DRAWER_HALF = (0.10, 0.12, 0.04)   # drawer box half extents (x, y, z)
DRAWER_BOTTOM_GAP = 0.005          # drawer floats this far above the table
CABINET_WALL = 0.01                # wall thickness of the shell
HANDLE_HALF = (0.03, 0.01, 0.015)  # fin handle half extents, protruding towards -x
HANDLE_Z_BELOW_TOP = 0.02          # handle centre this far below the drawer's top face
DRAWER_TRAVEL = 0.20               # joint range [0, 0.20] (0 = closed)
DRAWER_SUCCESS_OPENING = 0.9 * DRAWER_TRAVEL
DRAWER_JOINT_DAMPING = 1.0         # N·s/m
DRAWER_MASS = 1.0                  # kg, the drawer with its handle

# --- camera (ManiSkill's PickCube/PushCube "base_camera") ----------------------------------
CAMERA_EYE = (0.3, 0.0, 0.6)
CAMERA_TARGET = (-0.1, 0.0, 0.1)
CAMERA_FOVY = math.pi / 2   # vertical field of view
CAMERA_NEAR, CAMERA_FAR = 0.01, 100.0
# A viewer camera for videos (ManiSkill's "render_camera").
RENDER_EYE = (0.6, 0.7, 0.6)
RENDER_TARGET = (0.0, 0.0, 0.35)
RENDER_FOVY = 1.0
RENDER_SIZE = 256
# The camera the simulated arm publishes for ArUco perception (robot_bridge.sim_camera): in front
# of the workspace and to the side, looking down across it. Measured with the scripted Panda
# expert (4 seeds, 640x480, apriltag corners): the marker on the cube's top face is detected in
# 200/200 push_cube frames from here, against 106/200 from the side (the near finger covers it)
# and 192/200 from straight in front (the wrist covers it while descending). A grasp from above
# covers the top face from any view (pick_cube: at most 128/200 frames), so perception=aruco
# serves push_cube well and pick_cube only until the grasp.
ARUCO_CAMERA_EYE = (0.45, -0.3, 0.45)
ARUCO_CAMERA_TARGET = (0.05, 0.0, 0.0)
ARUCO_CAMERA_FOVY = math.radians(35.0)
ARUCO_CAMERA_SIZE = (640, 480)  # width, height
# The marker printed on each cube's top face: its black square spans this fraction of the face
# (a white quiet zone around it), ids by cube index.
ARUCO_MARKER_FRACTION = 0.75
ARUCO_DICTIONARY = "DICT_4X4_50"


# --- arms ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSetup:
    """Where an arm stands in the task frame, how it starts, and the task geometry sized for it.

    The Panda's numbers are the constants above (ManiSkill's PickCube-v1 and friends). A smaller
    arm gets ManiSkill's own per-robot PickCube settings (`pick_cube_cfgs.py`), moved so that the
    cube spawn region stays centred on the task frame's origin: the rules and experts then read
    the same frame for every arm.

    Args:
        arm: the description's name (configs/arm/<arm>.yaml).
        tasks: the tasks this arm's scenes and experts are built for.
        base_pos: the arm's base in the task frame; the base's axes are the task frame's (no yaw),
            so the ROS side's `base_in_task` is this translation.
        init_qpos: arm joint positions at reset (Gaussian noise ROBOT_INIT_QPOS_NOISE is added).
        cube_half_size, cube_spawn_half_range: the cubes and their spawn square about (0, 0).
        pick_goal_thresh, pick_max_goal_height: pick_cube's success radius and goal heights.
        camera_eye, camera_target, render_eye, render_target: the observation and viewer cameras.
        gripper_step: largest change of the gripper joint target per control step for a jaw (rad);
            None: the target follows the command at once (the Panda's fingers).
        gripper_force_limit: the gripper drives' force limit (N, or N m for a jaw).
        mujoco_impratio: MuJoCo's ratio of frictional to normal contact impedance in this arm's
            scenes (1: MuJoCo's default; higher holds a squeezed object with less slip).
        episode_length: control steps per episode on this arm; 0: the task's own.
        expert_approach_height, expert_approach_tolerance: how high above an object the scripted
            experts line the TCP up, and how closely before they descend.
        workspace_lo, workspace_hi: the box the TCP must stay in, in the arm's base frame, for
            the ROS 2 safety filter driving this scene's simulated arm; None: the filter's own
            default (the Panda's cell, robot_bridge/safety.py).
    """

    arm: str
    tasks: tuple[str, ...]
    base_pos: tuple[float, float, float]
    init_qpos: tuple[float, ...]
    cube_half_size: float = CUBE_HALF_SIZE
    cube_spawn_half_range: float = CUBE_SPAWN_HALF_RANGE
    pick_goal_thresh: float = PICK_GOAL_THRESH
    pick_max_goal_height: float = PICK_MAX_GOAL_HEIGHT
    camera_eye: tuple[float, float, float] = CAMERA_EYE
    camera_target: tuple[float, float, float] = CAMERA_TARGET
    render_eye: tuple[float, float, float] = RENDER_EYE
    render_target: tuple[float, float, float] = RENDER_TARGET
    gripper_step: float | None = None
    gripper_force_limit: float = GRIPPER_FORCE_LIMIT
    mujoco_impratio: float = 1.0
    episode_length: int = 0
    expert_approach_height: float = 0.08
    expert_approach_tolerance: float = 0.015
    workspace_lo: tuple[float, float, float] | None = None
    workspace_hi: tuple[float, float, float] | None = None


ARM_SETUPS = {
    "panda": ArmSetup("panda", ("push_cube", "pick_cube", "stack_cube", "open_drawer"), ROBOT_BASE_POS,
                      ROBOT_REST_QPOS[:ARM_JOINTS]),
    # ManiSkill's PickCubeSO100-v1 (pick_cube_cfgs.py "so100", TableSceneBuilder): base 26.5 cm behind
    # the spawn centre, cube 2.5 cm, spawn +-5 cm, goals up to 8 cm high, the start pose with the jaw
    # pointing down. ManiSkill turns the base by 90 deg about z because the SO-100 reaches along its
    # base's -y; here the base keeps the task frame's axes and stands on +y of the spawn centre, and
    # the cameras are moved with it (the same views of the same workspace).
    # ManiSkill drives the jaw like the Panda's fingers (kp 1e3, force limit 100), which on a revolute
    # jaw squeezes a 25 mm cube with over 1 kN; MuJoCo's soft contacts then pop it out of the grasp.
    # The jaw's limit here is its STS3215 servo's stall torque, about 3 N m (30 kg cm at 12 V).
    # The SO-100 moves at most 0.05 rad per step and, its joint targets re-based on where the joints
    # stand, about 40 % of that: the scripted pick first succeeds after 36-139 steps (24 episodes),
    # so episodes last 150 (7.5 s). A held cube crept down the jaw under MuJoCo's default friction
    # impedance and fell (12 of 24 episodes at 3 N m); impratio 3 holds it: 24/24 on the source
    # domain, 10/12 on target (friction x0.6), ManiSkill 15/16 (seed 0, 150 steps).
    "so100": ArmSetup("so100", ("pick_cube",), (0.0, 0.265, 0.0), (0.0, 0.0, 0.0, math.pi / 2, math.pi / 2),
                      cube_half_size=0.0125, cube_spawn_half_range=0.05, pick_goal_thresh=0.0125 * 1.25,
                      pick_max_goal_height=0.08, camera_eye=(0.0, -0.19, 0.4), camera_target=(0.0, 0.1, -0.25),
                      render_eye=(0.3, -0.36, 0.4), render_target=(0.0, 0.0, 0.1), gripper_step=0.2,
                      gripper_force_limit=3.0, mujoco_impratio=3.0, episode_length=150,
                      expert_approach_height=0.03, expert_approach_tolerance=0.004,
                      # Spawns (x1.5 for wide domains) and goals, 26.5 cm in front of the base (-y);
                      # the TCP (9 mm above the jaw's end) at least 1 cm above the table.
                      workspace_lo=(-0.15, -0.40, 0.01), workspace_hi=(0.15, -0.10, 0.25)),
}


def arm_setup(arm: str, task: str | None = None) -> ArmSetup:
    """The setup of `arm`; with `task`, refuses a task the arm has no scene for, naming the ones it has."""
    if arm not in ARM_SETUPS:
        raise ValueError(f"arm {arm!r} has no task scenes (tasks.layout.ARM_SETUPS: {', '.join(ARM_SETUPS)}); "
                         f"configs/arm/{arm}.yaml describes it for the ROS 2 side only")
    setup = ARM_SETUPS[arm]
    if task is not None and task not in setup.tasks:
        raise ValueError(f"task {task!r} is not built for arm {arm!r} (its tasks: {', '.join(setup.tasks)})")
    return setup
