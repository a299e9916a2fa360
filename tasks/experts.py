"""Scripted experts: waypoint servoing in end-effector space from privileged state.

Each expert is a small per-env state machine over phases (approach, descend, grasp,
carry, release, ...). Every phase names a target position for the tool centre point and a
gripper command; the action servoes the TCP towards the target with a proportional step
(`pd_ee_delta_pos`: action 1 = 0.1 m). A phase ends when the TCP is within its tolerance
of the target (or after a fixed number of steps for grasping and releasing). If the
object slips out of the hand while carrying, the expert goes back to the approach.

The experts read `env.privileged_obs()` (tcp_pose, obj_pose, goal_pos, qpos), the same
features on every backend, so one expert serves both engines.

    expert = make_expert("pick_cube", num_envs=env.num_envs)
    obs, info = env.reset(seed=0); expert.reset()
    action = expert.act(env.privileged_obs())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tasks import layout

if TYPE_CHECKING:
    from tasks.joint_expert import JointSpaceExpert

GRIP_OPEN, GRIP_CLOSED = 1.0, -1.0


class Expert:
    """Base: phase bookkeeping and the servo step shared by every task.

    Args:
        num_envs: batch size.
        noise_std: std of Gaussian noise added to the motion part of each action (diverse demos).
        gain: proportional gain, in units of full-scale actions per 0.1 m of error.
        generator: random stream for the noise.
        approach_height, approach_tolerance: the approach waypoint's height above an object and
            how close the TCP must come to it before descending (a jaw with one fixed side needs
            it closer than two fingers do).
    """

    tolerance = 0.01  # metres: a waypoint counts as reached within this distance
    lost_distance = 0.03  # metres between a carried object and the TCP that count as dropped

    def __init__(self, num_envs: int, noise_std: float = 0.0, gain: float = 1.5,
                 generator: torch.Generator | None = None, approach_height: float = 0.08,
                 approach_tolerance: float = 0.015) -> None:
        self.num_envs = num_envs
        # How high above an object the gripper lines up, and how closely before it descends.
        self.approach_height = approach_height
        self.approach_tolerance = approach_tolerance
        self.noise_std = noise_std
        self.gain = gain
        self.generator = generator
        self.phase = torch.zeros(num_envs, dtype=torch.long)
        self.timer = torch.zeros(num_envs, dtype=torch.long)
        self.half = torch.full((num_envs,), layout.CUBE_HALF_SIZE)
        self._fresh = torch.ones(num_envs, dtype=torch.bool)  # envs whose episode just began

    def reset(self, env_mask: torch.Tensor | None = None) -> None:
        """Start over in every env (or where env_mask [N] is True); call after env.reset."""
        mask = slice(None) if env_mask is None else env_mask.cpu()
        self.phase[mask] = 0
        self.timer[mask] = 0
        self._fresh[mask] = True

    def act(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions [N, 4] (dx, dy, dz, gripper) in [-1, 1] for the privileged state."""
        state = {k: v.detach().float().cpu() for k, v in state.items()}
        if self._fresh.any():
            self._on_reset(state, self._fresh)
            self._fresh[:] = False
        tcp = state["tcp_pose"][:, :3]
        self.speed = torch.ones(self.num_envs, 1)
        target, grip = self._plan(state, tcp)
        motion = (self.gain * (target - tcp) / layout.EE_DELTA_POS_LIMIT).clamp(-1.0, 1.0)
        motion = motion.clamp(-self.speed, self.speed)
        if self.noise_std > 0:
            motion = motion + self.noise_std * torch.randn(motion.shape, generator=self.generator)
        self.timer += 1
        return torch.cat([motion.clamp(-1.0, 1.0), grip.unsqueeze(1)], dim=1)

    # ---- for tasks ----------------------------------------------------------------------
    def _on_reset(self, state: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        """Record per-episode facts (the object's resting half size) for the envs in mask."""
        self.half[mask] = state["obj_pose"][mask, 2]

    def _plan(self, state: dict[str, torch.Tensor], tcp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance phases and return (target TCP position [N, 3], gripper command [N]).

        May lower `self.speed` [N, 1] (the largest action magnitude per axis) for this step.
        """
        raise NotImplementedError

    def _advance(self, where: torch.Tensor) -> None:
        self.phase[where] += 1
        self.timer[where] = 0

    def _goto(self, where: torch.Tensor, phase: int) -> None:
        self.phase[where] = phase
        self.timer[where] = 0


def _reached(tcp: torch.Tensor, target: torch.Tensor, tol: float) -> torch.Tensor:
    return torch.linalg.norm(target - tcp, dim=1) < tol


class PushCubeExpert(Expert):
    """Lower a closed gripper behind the cube, then push it until its centre is on the goal."""

    push_speed = 0.4

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        self.direction = torch.zeros(num_envs, 2)  # unit pushing direction in the table plane

    def _on_reset(self, state, mask):
        super()._on_reset(state, mask)
        # The pushing line is fixed per episode: recomputing it from the moving cube would
        # flip it once the cube passes the goal.
        d = state["goal_pos"][mask, :2] - state["obj_pose"][mask, :2]
        self.direction[mask] = d / torch.linalg.norm(d, dim=1, keepdim=True).clamp_min(1e-6)

    def _plan(self, state, tcp):
        cube, goal = state["obj_pose"][:, :3], state["goal_pos"]
        half, direction = self.half.unsqueeze(1), self.direction
        # The fingertips are about 1 cm thick: the TCP stays that far behind the cube's face.
        standoff = half + 0.012
        behind = torch.cat([cube[:, :2] - direction * (standoff + 0.02), half], dim=1)
        above_behind = behind + torch.tensor([0.0, 0.0, 0.06])
        push_to = torch.cat([goal[:, :2] - direction * standoff, half], dim=1)
        phase = self.phase
        self._advance((phase == 0) & _reached(tcp, above_behind, 0.015))
        self._advance((phase == 1) & _reached(tcp, behind, 0.01))
        # Re-approach if the cube slid sideways off the pushing line.
        to_cube = cube[:, :2] - tcp[:, :2]
        off_line = (to_cube[:, 0] * direction[:, 1] - to_cube[:, 1] * direction[:, 0]).abs() > 0.6 * half[:, 0] + 0.01
        not_there = ((goal[:, :2] - cube[:, :2]) * direction).sum(dim=1) > 0.03
        self._goto((self.phase == 2) & off_line & not_there, 0)
        # Push slowly: a fast push flings the cube past the goal.
        self.speed[self.phase == 2] = self.push_speed
        targets = torch.stack([above_behind, behind, push_to], dim=1)
        target = targets[torch.arange(self.num_envs), self.phase.clamp(max=2)]
        return target, torch.full((self.num_envs,), GRIP_CLOSED)


class PickCubeExpert(Expert):
    """Approach from above, grasp, carry the cube to the goal and hold it still there."""

    grasp_steps = 6

    def _plan(self, state, tcp):
        cube, goal = state["obj_pose"][:, :3], state["goal_pos"]
        above = cube + torch.tensor([0.0, 0.0, self.approach_height])
        phase = self.phase
        self._advance((phase == 0) & _reached(tcp, above, self.approach_tolerance))
        self._advance((phase == 1) & _reached(tcp, cube, 0.008))
        self._advance((phase == 2) & (self.timer >= self.grasp_steps))
        # Dropped: the cube is no longer between the fingers.
        lost = (self.phase == 3) & (torch.linalg.norm(cube - tcp, dim=1) > self.lost_distance)
        self._goto(lost, 0)
        targets = torch.stack([above, cube, cube, goal], dim=1)
        target = targets[torch.arange(self.num_envs), self.phase]
        grip = torch.where(self.phase >= 2, GRIP_CLOSED, GRIP_OPEN)
        return target, grip


class StackCubeExpert(Expert):
    """Pick cube A, lift it clear, carry it above cube B, lower it on top, let go, back off."""

    grasp_steps = 6
    release_steps = 4

    def _plan(self, state, tcp):
        cube, cube_b = state["obj_pose"][:, :3], state["goal_pos"]
        half = self.half.unsqueeze(1)
        above = cube + torch.tensor([0.0, 0.0, 0.08])
        on_b = cube_b + torch.cat([torch.zeros(self.num_envs, 2), 2 * half + 0.002], dim=1)
        above_b = on_b + torch.tensor([0.0, 0.0, 0.05])
        # Lift straight up before moving sideways: carried low, A clips B and shoves it away.
        lifted = torch.cat([cube[:, :2], above_b[:, 2:]], dim=1)
        retreat = on_b + torch.tensor([0.0, 0.0, 0.08])
        phase = self.phase
        self._advance((phase == 0) & _reached(tcp, above, self.approach_tolerance))
        self._advance((phase == 1) & _reached(tcp, cube, 0.008))
        self._advance((phase == 2) & (self.timer >= self.grasp_steps))
        self._advance((phase == 3) & (tcp[:, 2] > lifted[:, 2] - 0.02))
        self._advance((phase == 4) & _reached(tcp, above_b, 0.012))
        self._advance((phase == 5) & _reached(tcp, on_b, 0.006))
        self._advance((phase == 6) & (self.timer >= self.release_steps))
        carrying = (self.phase >= 3) & (self.phase <= 5)
        self._goto(carrying & (torch.linalg.norm(cube - tcp, dim=1) > self.lost_distance), 0)
        targets = torch.stack([above, cube, cube, lifted, above_b, on_b, on_b, retreat], dim=1)
        target = targets[torch.arange(self.num_envs), self.phase.clamp(max=7)]
        grip = torch.where((self.phase >= 2) & (self.phase <= 5), GRIP_CLOSED, GRIP_OPEN)
        return target, grip


class OpenDrawerExpert(Expert):
    """Grasp the handle fin from above and pull it past the opening the task asks for."""

    grasp_steps = 6

    def __init__(self, num_envs: int, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        self.direction = torch.zeros(num_envs, 3)  # unit opening direction of the drawer

    def _on_reset(self, state, mask):
        # The opening direction is fixed per episode: taken from the moving handle it
        # would flip once the handle passes the goal, and the expert would close the drawer.
        d = state["goal_pos"][mask] - state["obj_pose"][mask, :3]
        self.direction[mask] = d / torch.linalg.norm(d, dim=1, keepdim=True).clamp_min(1e-6)

    def _plan(self, state, tcp):
        handle, goal = state["obj_pose"][:, :3], state["goal_pos"]
        above = handle + torch.tensor([0.0, 0.0, 0.08])
        # Pull a little beyond the success opening so that small slips still count.
        pull_to = goal + self.direction * 0.02
        phase = self.phase
        self._advance((phase == 0) & _reached(tcp, above, self.approach_tolerance))
        self._advance((phase == 1) & _reached(tcp, handle, 0.008))
        self._advance((phase == 2) & (self.timer >= self.grasp_steps))
        lost = (self.phase == 3) & (torch.linalg.norm(handle - tcp, dim=1) > self.lost_distance)
        self._goto(lost, 0)
        targets = torch.stack([above, handle, handle, pull_to], dim=1)
        target = targets[torch.arange(self.num_envs), self.phase]
        grip = torch.where(self.phase >= 2, GRIP_CLOSED, GRIP_OPEN)
        return target, grip


EXPERTS: dict[str, type[Expert]] = {
    "push_cube": PushCubeExpert,
    "pick_cube": PickCubeExpert,
    "stack_cube": StackCubeExpert,
    "open_drawer": OpenDrawerExpert,
}


def replay_expert(task: str, obs: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """The actions [steps, 4] a fresh scripted expert of `task` takes on one episode's
    observations (features [>= steps, ...] in time order, at least tcp_pose, obj_pose, goal_pos).

    The expert is deterministic given what it observes, so this is what it did at each step of a
    demonstration it recorded, when the observations are the ones it acted on: demo readers are
    checked with it.
    """
    expert = make_expert(task, num_envs=1)
    keys = ("tcp_pose", "obj_pose", "goal_pos")
    return torch.cat([expert.act({k: obs[k][t:t + 1] for k in keys}) for t in range(steps)])


def make_expert(task: str, num_envs: int, noise_std: float = 0.0, control_mode: str = "pd_ee_delta_pos",
                generator: torch.Generator | None = None, arm: str = "panda") -> Expert | JointSpaceExpert:
    """The scripted expert of `task` on `arm`.

    In pd_ee_delta_pos it acts in end-effector space directly; in pd_joint_delta_pos (an arm
    without end-effector control, the SO-100) the same waypoints go through position IK on the
    arm's description (tasks.joint_expert).
    """
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task!r}; expected one of {', '.join(EXPERTS)}")
    setup = layout.arm_setup(arm, task)
    expert = EXPERTS[task](num_envs, noise_std=noise_std, generator=generator,
                           approach_height=setup.expert_approach_height,
                           approach_tolerance=setup.expert_approach_tolerance)
    if control_mode == "pd_ee_delta_pos":
        return expert
    if control_mode == "pd_joint_delta_pos":
        from tasks.joint_expert import JointSpaceExpert
        return JointSpaceExpert(expert, arm)
    raise ValueError(f"scripted experts act in pd_ee_delta_pos or pd_joint_delta_pos; got control_mode="
                     f"{control_mode!r}")
