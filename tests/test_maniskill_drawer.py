import pytest

pytest.importorskip("mani_skill")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

from tasks import layout  # noqa: E402
from tasks.maniskill_drawer import ENV_ID, OpenDrawerEnv  # noqa: E402

# ManiSkill refuses num_envs > 1 on physx_cpu, so batching is covered by several seeds of
# one env; every tensor still carries the env dim.
SEEDS = (0, 1, 2, 3)
HANDLE_ABOVE = 0.08  # the expert's approach height above the handle centre
CLOSE_STEPS = 5


def make(**kwargs) -> gym.Env:
    kwargs = {"obs_mode": "state", "control_mode": "pd_ee_delta_pos", **kwargs}
    return gym.make(ENV_ID, sim_backend="physx_cpu", render_backend="sapien_cpu", **kwargs)


@pytest.fixture(scope="module")
def env() -> gym.Env:
    env = make()
    yield env
    env.close()


def expected_handle_pos(cabinet_pos: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Handle centre from the layout alone: in front of the drawer face by its half length,
    HANDLE_Z_BELOW_TOP under the drawer's top face, centred in y."""
    hx, _, hz = layout.DRAWER_HALF
    offset = torch.tensor([-hx - layout.HANDLE_HALF[0] * scale, 0.0,
                           layout.DRAWER_BOTTOM_GAP + 2 * hz - layout.HANDLE_Z_BELOW_TOP])
    return cabinet_pos + offset


def pull_expert(env: gym.Env, seed: int, max_steps: int) -> int | None:
    """Scripted top-down grasp and pull from privileged state; returns the control step at
    which the drawer first counts as open, or None.

    Above the handle -> down to its centre (gripper open) -> close for CLOSE_STEPS -> pull
    towards -x past the goal. Each action asks for the whole remaining offset (clipped to
    the controller's 0.1 m per step), so the phases end when the TCP is within 1 cm.
    """
    env.reset(seed=seed)
    u: OpenDrawerEnv = env.unwrapped
    phase, closed_for = "above", 0
    for step in range(1, max_steps + 1):
        tcp = u.agent.tcp.pose.p[0]
        handle = u.handle_pose.p[0]
        target, grip = handle.clone(), 1.0
        if phase == "above":
            target[2] += HANDLE_ABOVE
            if torch.linalg.norm(target - tcp) < 0.01:
                phase, target = "descend", handle.clone()
        if phase == "descend" and torch.linalg.norm(target - tcp) < 0.01:
            phase = "close"
        if phase == "close":
            grip, closed_for = -1.0, closed_for + 1
            if closed_for > CLOSE_STEPS:
                phase = "pull"
        if phase == "pull":
            # Aim a little beyond the goal in x so the pull does not slow down near it.
            grip = -1.0
            target[0] = u.goal_handle_pos[0, 0] - 0.03
        delta = ((target - tcp) / layout.EE_DELTA_POS_LIMIT).clamp(-1.0, 1.0)
        _, _, _, _, info = env.step(torch.cat([delta, torch.tensor([grip])])[None])
        if bool(info["success"][0]):
            return step
    return None


def test_reset_places_cabinet_in_range_with_drawer_closed(env):
    positions = []
    for seed in SEEDS:
        _, info = env.reset(seed=seed)
        u: OpenDrawerEnv = env.unwrapped
        pos = u.drawer.pose.p
        assert pos.shape == (1, 3)
        half = layout.CABINET_SPAWN_HALF_RANGE
        assert abs(float(pos[0, 0]) - layout.CABINET_CENTER_X) <= half + 1e-6
        assert abs(float(pos[0, 1])) <= half + 1e-6
        assert abs(float(pos[0, 2])) < 1e-6
        assert u.drawer_qpos.shape == (1,) and float(u.drawer_qpos[0]) == pytest.approx(0.0, abs=1e-6)
        assert not bool(info["success"][0]) and float(info["opening"][0]) == pytest.approx(0.0, abs=1e-6)
        positions.append(pos[0, :2].clone())
    assert len({tuple(p.tolist()) for p in positions}) == len(SEEDS)  # seeds give different cabinets


def test_handle_and_goal_follow_the_cabinet(env):
    for seed in SEEDS[:2]:
        env.reset(seed=seed)
        u: OpenDrawerEnv = env.unwrapped
        cabinet = u.drawer.pose.p[0]
        handle = u.handle_pose
        assert handle.raw_pose.shape == (1, 7)
        torch.testing.assert_close(handle.p[0], expected_handle_pos(cabinet), atol=1e-5, rtol=0)
        goal = expected_handle_pos(cabinet) - torch.tensor([layout.DRAWER_SUCCESS_OPENING, 0.0, 0.0])
        torch.testing.assert_close(u.goal_handle_pos[0], goal, atol=1e-5, rtol=0)


def test_success_flips_at_the_success_opening(env):
    env.reset(seed=0)
    u: OpenDrawerEnv = env.unwrapped
    u.drawer.set_qpos(torch.tensor([[layout.DRAWER_SUCCESS_OPENING - 0.01]]))
    assert not bool(u.evaluate()["success"][0])
    u.drawer.set_qpos(torch.tensor([[layout.DRAWER_SUCCESS_OPENING]]))
    info = u.evaluate()
    assert bool(info["success"][0])
    assert float(info["opening"][0]) == pytest.approx(layout.DRAWER_SUCCESS_OPENING, abs=1e-6)
    # The drawer slides along -x: the handle now sits on its goal.
    torch.testing.assert_close(u.handle_pose.p, u.goal_handle_pos, atol=1e-5, rtol=0)


def test_untouched_drawer_stays_closed_and_state_obs_has_the_drawer(env):
    obs, _ = env.reset(seed=1)
    # qpos 9 + qvel 9 + tcp_pose 7 + goal_pos 3 + handle_pose 7 + drawer_qpos 1
    assert obs.shape == (1, 36)
    for _ in range(10):
        _, reward, _, _, info = env.step(torch.zeros(1, 4))
    assert float(info["opening"][0]) == pytest.approx(0.0, abs=1e-5)
    assert 0.0 <= float(reward[0]) < 5.0


def test_state_dict_obs_names_the_task_features():
    env = make(obs_mode="state_dict")
    obs, _ = env.reset(seed=0)
    extra = obs["extra"]
    assert set(extra) == {"tcp_pose", "goal_pos", "handle_pose", "drawer_qpos"}
    assert extra["handle_pose"].shape == (1, 7) and extra["drawer_qpos"].shape == (1,)
    env.close()


@pytest.mark.parametrize("seed", [0, 1])
def test_scripted_grasp_and_pull_opens_the_drawer(env, seed):
    steps = pull_expert(env, seed, max_steps=50)
    assert steps is not None, f"seed {seed}: drawer not open after 50 steps"
    u: OpenDrawerEnv = env.unwrapped
    assert float(u.compute_normalized_dense_reward(None, None, u.evaluate())[0]) == pytest.approx(1.0)


def test_handle_scales_build_per_env_handles_with_the_same_mass():
    env = make(handle_scales=[1.1])
    env.reset(seed=0)
    u: OpenDrawerEnv = env.unwrapped
    torch.testing.assert_close(u.handle_pose.p[0], expected_handle_pos(u.drawer.pose.p[0], 1.1), atol=1e-5, rtol=0)
    assert u.drawer_link._objs[0].mass == pytest.approx(layout.DRAWER_MASS, rel=1e-4)
    env.close()
    with pytest.raises(ValueError, match="handle_scales has 2 values for num_envs=1"):
        make(handle_scales=[1.0, 1.1])
    with pytest.raises(ValueError, match="handle_scale=0"):
        make(handle_scale=0.0)
