"""The four tasks' initial-state distributions, observed object features and success rules.

The same distributions and rules as the ManiSkill backend (ManiSkill3's PushCube and
PickCube; StackCube with both cubes in the cube spawn square, as tasks/maniskill_cubes.py
samples them; tasks.layout's drawer). Sizes follow the env's
object_size_scale: spawn heights and size-dependent tolerances use the env's half size.
`spawn_scale` (the env's init_range_scale) multiplies every spawn region's x/y half range
about the region's centre.
"""

from __future__ import annotations

import abc

import numpy as np

from tasks import layout
from tasks.drawer_geometry import DRAWER_CENTER_Z, handle_offset
from tasks.mujoco.world import World


class TaskRules(abc.ABC):
    """What one task places at reset, what it observes, and when it is solved."""

    @abc.abstractmethod
    def reset(self, world: World, rng: np.random.Generator, spawn_scale: float) -> None:
        """Place the task's objects and goal (the robot is already reset), with every
        spawn region's x/y half range multiplied by `spawn_scale`."""

    @abc.abstractmethod
    def obj_pose(self, world: World) -> np.ndarray:
        """The `obj_pose` feature [7]."""

    def goal_pos(self, world: World) -> np.ndarray:
        """The `goal_pos` feature [3]."""
        return world.goal

    @abc.abstractmethod
    def evaluate(self, world: World) -> dict[str, bool]:
        """At least "success"."""

    @staticmethod
    def _show_goal(world: World) -> None:
        world.data.mocap_pos[world.index.goal_mocap] = world.goal


class PushCube(TaskRules):
    def reset(self, world: World, rng: np.random.Generator, spawn_scale: float) -> None:
        h = world.half_sizes[0]
        r = layout.CUBE_SPAWN_HALF_RANGE * spawn_scale
        xy = rng.uniform(-r, r, size=2)
        world.set_cube(0, np.array([xy[0], xy[1], h]), yaw=0.0)
        world.goal = np.array([xy[0] + layout.PUSH_GOAL_OFFSET_X, xy[1], layout.PUSH_GOAL_Z])
        self._show_goal(world)

    def obj_pose(self, world: World) -> np.ndarray:
        return world.cube_pose(0)

    def evaluate(self, world: World) -> dict[str, bool]:
        cube = world.cube_pose(0)
        placed = np.linalg.norm(cube[:2] - world.goal[:2]) < layout.PUSH_GOAL_RADIUS
        on_table = cube[2] < world.half_sizes[0] + 5e-3
        return {"success": bool(placed and on_table)}


class PickCube(TaskRules):
    def reset(self, world: World, rng: np.random.Generator, spawn_scale: float) -> None:
        h = world.half_sizes[0]
        r = world.setup.cube_spawn_half_range * spawn_scale
        xy = rng.uniform(-r, r, size=2)
        yaw = rng.uniform(0.0, 2 * np.pi)
        world.set_cube(0, np.array([xy[0], xy[1], h]), yaw=yaw)
        goal_xy = rng.uniform(-r, r, size=2)
        world.goal = np.array([goal_xy[0], goal_xy[1], h + rng.uniform(0.0, world.setup.pick_max_goal_height)])
        self._show_goal(world)

    def obj_pose(self, world: World) -> np.ndarray:
        return world.cube_pose(0)

    def evaluate(self, world: World) -> dict[str, bool]:
        placed = np.linalg.norm(world.cube_pose(0)[:3] - world.goal) <= world.setup.pick_goal_thresh
        static = np.abs(world.data.qvel[world.index.arm_dof]).max() <= layout.ROBOT_STATIC_QVEL
        return {"success": bool(placed and static), "is_obj_placed": bool(placed), "is_robot_static": bool(static)}


class StackCube(TaskRules):
    """Cube A (index 0) goes on cube B (index 1); goal_pos is cube B's centre."""

    def reset(self, world: World, rng: np.random.Generator, spawn_scale: float) -> None:
        h = world.half_sizes
        r = layout.CUBE_SPAWN_HALF_RANGE * spawn_scale
        # Both cubes in the spawn square, B redrawn until it clears A, and A too after many misses
        # (the ManiSkill backend's sampler; the separation covers both cubes' half diagonals at
        # this size).
        min_sep = layout.STACK_MIN_SEPARATION * h[0] / layout.CUBE_HALF_SIZE
        a = rng.uniform(-r, r, size=2)
        b = rng.uniform(-r, r, size=2)
        redraws = 0
        while np.linalg.norm(a - b) < min_sep:
            redraws += 1
            if redraws > layout.STACK_SPAWN_MAX_TRIES:
                raise ValueError(f"stack_cube: domain.init_range_scale={spawn_scale} is too small: no two cube "
                                 f"positions {min_sep:.4f} m apart found in the +-{r:.4f} m spawn square after "
                                 f"{layout.STACK_SPAWN_MAX_TRIES} draws")
            if redraws > layout.STACK_SPAWN_B_ONLY_TRIES:
                a = rng.uniform(-r, r, size=2)
            b = rng.uniform(-r, r, size=2)
        for k, xy in enumerate((a, b)):
            world.set_cube(k, np.array([xy[0], xy[1], h[k]]), yaw=rng.uniform(0.0, 2 * np.pi))
        world.goal = world.cube_pose(1)[:3]

    def obj_pose(self, world: World) -> np.ndarray:
        return world.cube_pose(0)

    def goal_pos(self, world: World) -> np.ndarray:
        return world.cube_pose(1)[:3]

    def evaluate(self, world: World) -> dict[str, bool]:
        h = world.half_sizes[0]
        offset = world.cube_pose(0)[:3] - world.cube_pose(1)[:3]
        on_b = (np.linalg.norm(offset[:2]) <= np.hypot(h, h) + layout.STACK_XY_TOL
                and abs(offset[2] - 2 * h) <= layout.STACK_Z_TOL)
        lin, ang = world.cube_velocity(0)
        static = np.linalg.norm(lin) <= layout.STACK_STATIC_LIN and np.linalg.norm(ang) <= layout.STACK_STATIC_ANG
        grasped = world.is_grasping(world.index.cube_geoms[0])
        return {"success": bool(on_b and static and not grasped), "is_cubeA_on_cubeB": bool(on_b),
                "is_cubeA_static": bool(static), "is_cubeA_grasped": bool(grasped)}


class OpenDrawer(TaskRules):
    def reset(self, world: World, rng: np.random.Generator, spawn_scale: float) -> None:
        r = layout.CABINET_SPAWN_HALF_RANGE * spawn_scale
        dx, dy = rng.uniform(-r, r, size=2)
        world.model.body_pos[world.index.cabinet_body] = (layout.CABINET_CENTER_X + dx, dy, 0.0)
        world.data.qpos[world.index.drawer_qpos] = 0.0
        size = world.model.geom_size[world.index.handle_geom, 0] / layout.HANDLE_HALF[0]
        closed = (world.model.body_pos[world.index.cabinet_body] + np.array([0.0, 0.0, DRAWER_CENTER_Z])
                  + handle_offset(size))
        world.goal = closed - np.array([layout.DRAWER_SUCCESS_OPENING, 0.0, 0.0])

    def obj_pose(self, world: World) -> np.ndarray:
        return world.geom_pose(world.index.handle_geom)

    def evaluate(self, world: World) -> dict[str, bool]:
        opening = world.data.qpos[world.index.drawer_qpos]
        return {"success": bool(opening >= layout.DRAWER_SUCCESS_OPENING)}


RULES: dict[str, type[TaskRules]] = {"push_cube": PushCube, "pick_cube": PickCube, "stack_cube": StackCube,
                                     "open_drawer": OpenDrawer}
