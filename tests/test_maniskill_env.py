"""Backend `maniskill` (ManiSkill3 on physx_cpu here): shapes, control, and every physical domain shift."""

import pytest
import torch

mani_skill = pytest.importorskip("mani_skill")

import tasks  # noqa: E402
from tasks.domain import DomainParams  # noqa: E402

MOVE_X = torch.tensor([[1.0, 0.0, 0.0, 1.0]])


def test_reset_step_shapes_with_several_envs_in_both_control_modes():
    for control_mode, dim in (("pd_ee_delta_pos", 4), ("pd_joint_delta_pos", 8)):
        env = tasks.make_env("push_cube", "maniskill", num_envs=2, control_mode=control_mode, episode_length=2)
        obs, info = env.reset(seed=0)
        assert env.contract == tasks.task_contract("push_cube", control_mode=control_mode)
        assert {k: tuple(v.shape) for k, v in obs.items()} == {
            k: (2, *f.shape) for k, f in env.contract.features.items()}
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, dim))
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, dim))
        assert reward.shape == terminated.shape == truncated.shape == info["success"].shape == (2,)
        assert truncated.all() and not terminated.any()
        env.close()


def test_seeded_resets_reproduce_the_initial_state_and_envs_differ():
    env = tasks.make_env("pick_cube", "maniskill", num_envs=2)
    first, _ = env.reset(seed=7)
    env.step(torch.ones(2, 4))
    again, _ = env.reset(seed=7)
    assert torch.equal(first["obj_pose"], again["obj_pose"]) and torch.equal(first["goal_pos"], again["goal_pos"])
    assert not torch.equal(first["obj_pose"][0], first["obj_pose"][1])
    env.close()


def _tcp_travel(env: tasks.TaskEnv) -> float:
    """TCP travel in the first control period of a half-scale +x command (before the drives saturate)."""
    start = float(env.privileged_obs()["tcp_pose"][0, 0])
    env.step(torch.tensor([[0.5, 0.0, 0.0, 1.0]]))
    return float(env.privileged_obs()["tcp_pose"][0, 0]) - start


def test_ee_delta_action_moves_the_tcp_along_the_commanded_axis():
    env = tasks.make_env("push_cube", "maniskill")
    env.reset(seed=0)
    start = env.privileged_obs()["tcp_pose"][0, :3]
    for _ in range(3):
        env.step(MOVE_X)
    moved = env.privileged_obs()["tcp_pose"][0, :3] - start
    assert 0.05 < moved[0] < 0.35 and moved[1:].abs().max() < 0.02
    env.close()


def _slide(friction: float) -> float:
    """How far a cube launched at 0.6 m/s along +x slides on the table."""
    env = tasks.make_env("push_cube", "maniskill", domain=DomainParams(friction_scale=friction))
    env.reset(seed=0)
    cube = env._envs[0].obj
    x0 = float(cube.pose.p[0, 0])
    cube.set_linear_velocity(torch.tensor([[0.6, 0.0, 0.0]]))
    hold = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    for _ in range(10):
        env.step(hold)
    env.close()
    return float(cube.pose.p[0, 0]) - x0


def test_lower_friction_lets_a_pushed_cube_slide_farther():
    assert _slide(0.3) > _slide(1.0) + 0.02


def test_object_mass_and_size_scales_change_the_cube():
    nominal = tasks.make_env("stack_cube", "maniskill")
    shifted = tasks.make_env("stack_cube", "maniskill", domain=DomainParams(object_mass_scale=2.0, object_size_scale=1.5))
    masses = []
    for env in (nominal, shifted):
        obs, _ = env.reset(seed=0)
        masses.append([c.get_mass() for c in env._objects(env._envs[0])])
    assert torch.allclose(torch.tensor(masses[1]), torch.tensor(masses[0]) * 2.0 * 1.5 ** 3, rtol=1e-4)
    # Cubes rest on the table at their half size.
    assert abs(float(shifted.privileged_obs()["obj_pose"][0, 2]) - 0.03) < 1e-3
    assert abs(float(nominal.privileged_obs()["obj_pose"][0, 2]) - 0.02) < 1e-3
    nominal.close(), shifted.close()


def test_gain_and_damping_scales_change_the_arm_response():
    travel = {}
    for name, domain in {"nominal": DomainParams(), "soft": DomainParams(controller_gain_scale=0.1),
                         "damped": DomainParams(joint_damping_scale=4.0)}.items():
        env = tasks.make_env("push_cube", "maniskill", domain=domain)
        env.reset(seed=0)
        travel[name] = _tcp_travel(env)
        env.close()
    assert travel["soft"] < 0.8 * travel["nominal"]
    assert travel["damped"] < 0.8 * travel["nominal"]


def test_camera_jitter_moves_the_observation_camera():
    images = {}
    for jitter in (0.0, 0.05):
        env = tasks.make_env("pick_cube", "maniskill", obs_mode="rgb", image_size=32,
                             domain=DomainParams(camera_pose_jitter=jitter))
        obs, _ = env.reset(seed=0)
        images[jitter] = obs["rgb"][0].float()
        assert obs["rgb"].dtype == torch.uint8 and obs["rgb"].shape == (1, 3, 32, 32)
        again, _ = env.reset(seed=1)
        images[(jitter, 1)] = again["rgb"][0].float()
        env.close()
    assert (images[0.05] - images[0.0]).abs().mean() > 1.0
    # Same seed, no jitter: the camera stays put (only the scene content changes across seeds).
    assert (images[0.0] - images[0.0]).abs().mean() == 0


def test_latency_delays_the_arm_by_exactly_k_steps():
    for k in (0, 2):
        env = tasks.make_env("push_cube", "maniskill", domain=DomainParams(action_latency_steps=k))
        env.reset(seed=0)
        xs = [float(env.privileged_obs()["tcp_pose"][0, 0])]
        for t in range(4):
            env.step(MOVE_X if t == 0 else torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
            xs.append(float(env.privileged_obs()["tcp_pose"][0, 0]))
        steps = [b - a for a, b in zip(xs, xs[1:])]
        first_move = next(i for i, d in enumerate(steps) if d > 0.01)
        assert first_move == k, (k, steps)
        env.close()
