"""Backend `mujoco`: shapes, seeding, control, every physical domain shift, rendering, experts."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, chosen before mujoco's first import
mujoco = pytest.importorskip("mujoco")

import tasks  # noqa: E402
from tasks import layout  # noqa: E402
from tasks.domain import DomainParams  # noqa: E402
from tasks.experts import make_expert  # noqa: E402
from tasks.mujoco import MujocoEnv  # noqa: E402
from tasks.mujoco.urdf import Origin  # noqa: E402

HOLD = torch.tensor([[0.0, 0.0, 0.0, 1.0]])


def make(task: str = "push_cube", **kwargs) -> MujocoEnv:
    env = tasks.make_env(task, "mujoco", **kwargs)
    assert isinstance(env, MujocoEnv)
    return env


@pytest.mark.parametrize("control_mode,dim", [("pd_ee_delta_pos", 4), ("pd_joint_delta_pos", 8)])
def test_reset_step_shapes_with_several_envs(control_mode, dim):
    env = make("stack_cube", num_envs=2, control_mode=control_mode, episode_length=2)
    obs, info = env.reset(seed=0)
    assert env.contract == tasks.task_contract("stack_cube", control_mode=control_mode)
    assert {k: tuple(v.shape) for k, v in obs.items()} == {k: (2, *f.shape) for k, f in env.contract.features.items()}
    assert all(v.dtype == torch.float32 for v in obs.values())
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, dim))
    assert reward.shape == terminated.shape == truncated.shape == info["success"].shape == (2,)
    assert info["success"].dtype == torch.bool and truncated.all() and not terminated.any()
    env.close()


@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_task_observes_its_contract(task):
    env = make(task)
    obs, info = env.reset(seed=0)
    assert set(obs) == set(tasks.task_contract(task).features) and "success" in info
    state = env.privileged_obs()
    assert torch.allclose(state["tcp_pose"][:, 3:].norm(dim=1), torch.ones(1))
    # The initial state is at rest: arm near the rest pose, objects on the table, nothing solved.
    assert (state["qpos"][0, :7] - torch.tensor(layout.ROBOT_REST_QPOS[:7])).abs().max() < 0.1
    assert not info["success"].any()
    env.close()


def test_seeded_resets_reproduce_the_initial_state_and_envs_differ():
    env = make("pick_cube", num_envs=2)
    env.reset(seed=7)
    first = env.privileged_obs()
    env.step(torch.ones(2, 4))
    env.reset(seed=7)
    again = env.privileged_obs()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["obj_pose"][0], first["obj_pose"][1])
    # Env i of a batch seeded s starts like env 0 of a batch seeded s + i.
    single = make("pick_cube")
    single.reset(seed=8)
    assert torch.equal(single.privileged_obs()["obj_pose"][0], first["obj_pose"][1])
    # Unseeded resets continue the streams: a new episode.
    env.reset()
    assert not torch.equal(env.privileged_obs()["obj_pose"], first["obj_pose"])
    env.close(), single.close()


def test_ee_delta_action_moves_the_tcp_along_the_commanded_axis():
    env = make()
    env.reset(seed=0)
    start = env.privileged_obs()["tcp_pose"][0]
    for _ in range(3):
        env.step(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    end = env.privileged_obs()["tcp_pose"][0]
    moved = end[:3] - start[:3]
    assert 0.05 < moved[0] < 0.3 and moved[1:].abs().max() < 0.02
    # The gripper keeps pointing down (the orientation the episode started with).
    assert abs(float(torch.dot(start[3:], end[3:]))) > 0.999
    for _ in range(2):
        env.step(torch.tensor([[0.0, 0.0, -1.0, 1.0]]))
    assert env.privileged_obs()["tcp_pose"][0, 2] < end[2] - 0.05
    env.close()


def test_joint_delta_action_moves_the_commanded_joint_and_the_gripper_closes():
    env = make(control_mode="pd_joint_delta_pos")
    env.reset(seed=0)
    q0 = env.privileged_obs()["qpos"][0]
    action = torch.zeros(1, 8)
    action[0, 0], action[0, -1] = 1.0, -1.0
    env.step(action)
    dq = env.privileged_obs()["qpos"][0] - q0
    assert 0.02 < dq[0] < 0.11 and dq[1:7].abs().max() < 0.02
    assert (dq[7:] < -0.01).all() and abs(float(dq[7] - dq[8])) < 1e-3  # both fingers close, coupled
    env.close()


def test_unreachable_targets_hold_the_arm():
    env = make()
    env.reset(seed=0)
    for _ in range(12):  # far beyond the Panda's reach along +x
        env.step(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    qvel = env.privileged_obs()["qvel"][0, :7]
    assert qvel.abs().max() < 0.1, qvel
    env.close()


def _slide(friction: float) -> float:
    """How far a cube launched at 0.6 m/s along +x slides on the table in 0.5 s."""
    env = make(domain=DomainParams(friction_scale=friction))
    env.reset(seed=0)
    world = env.worlds[0]
    x0 = float(world.cube_pose(0)[0])
    world.data.qvel[world.index.cube_dof[0]] = 0.6
    for _ in range(10):
        env.step(HOLD)
    env.close()
    return float(world.cube_pose(0)[0]) - x0


def test_friction_scale_scales_every_geom_and_lets_a_cube_slide_farther():
    env = make(domain=DomainParams(friction_scale=0.5))
    env.reset(seed=0)
    world = env.worlds[0]
    assert np.allclose(world.model.geom_friction, world.nominal.geom_friction * 0.5)
    env.close()
    assert _slide(0.3) > _slide(1.0) + 0.02


@pytest.mark.parametrize("task", ["stack_cube", "open_drawer"])
def test_object_mass_and_size_scales_change_the_objects(task):
    nominal, shifted = make(task), make(task, domain=DomainParams(object_mass_scale=2.0, object_size_scale=1.5))
    for env in (nominal, shifted):
        env.reset(seed=0)
        for _ in range(3):
            env.step(HOLD)
    n, s = nominal.worlds[0], shifted.worlds[0]
    idx = n.index
    if task == "stack_cube":
        cube = idx.cube_bodies[0]
        assert s.model.body_mass[cube] == pytest.approx(n.model.body_mass[cube] * 2.0 * 1.5 ** 3)
        assert s.model.geom_size[idx.cube_geoms[0], 0] == pytest.approx(0.03)
        # Cubes rest on the table at their half size (spawned there, still there after settling).
        assert abs(float(shifted.privileged_obs()["obj_pose"][0, 2]) - 0.03) < 1e-3
        assert abs(float(nominal.privileged_obs()["obj_pose"][0, 2]) - 0.02) < 1e-3
    else:
        assert s.model.body_mass[idx.drawer_body] == pytest.approx(n.model.body_mass[idx.drawer_body] * 2.0)
        assert np.allclose(s.model.geom_size[idx.handle_geom], np.array(layout.HANDLE_HALF) * 1.5)
        # The bigger fin stays attached to the drawer front: its centre moves out by the extra half length.
        handle_x = [float(env.privileged_obs()["obj_pose"][0, 0]) for env in (nominal, shifted)]
        assert handle_x[1] - handle_x[0] == pytest.approx(-0.5 * layout.HANDLE_HALF[0], abs=1e-4)
    nominal.close(), shifted.close()


def _tcp_travel(env: MujocoEnv) -> float:
    """TCP travel in the first control period of a half-scale +x command (before the drives saturate)."""
    start = float(env.privileged_obs()["tcp_pose"][0, 0])
    env.step(torch.tensor([[0.5, 0.0, 0.0, 1.0]]))
    return float(env.privileged_obs()["tcp_pose"][0, 0]) - start


def test_gain_and_damping_scales_change_the_drives_and_the_arm_response():
    travel = {}
    for name, domain in {"nominal": DomainParams(), "soft": DomainParams(controller_gain_scale=0.1),
                         "damped": DomainParams(joint_damping_scale=4.0)}.items():
        env = make(domain=domain)
        env.reset(seed=0)
        m, idx = env.worlds[0].model, env.index
        kp, kd = m.actuator_gainprm[idx.arm_actuators, 0], -m.actuator_biasprm[idx.arm_actuators, 2]
        gain, damping = domain.controller_gain_scale, domain.joint_damping_scale
        assert np.allclose(kp, layout.ARM_STIFFNESS * gain) and np.allclose(kd, layout.ARM_DAMPING * gain * damping)
        assert np.allclose(-m.actuator_biasprm[idx.finger_actuators, 2], layout.GRIPPER_DAMPING * gain)
        travel[name] = _tcp_travel(env)
        env.close()
    assert travel["soft"] < 0.8 * travel["nominal"]
    assert travel["damped"] < 0.8 * travel["nominal"]


def test_camera_jitter_moves_the_observation_camera_per_episode():
    poses = {}
    for jitter in (0.0, 0.05):
        env = make("pick_cube", domain=DomainParams(camera_pose_jitter=jitter))
        world, cam = env.worlds[0], env.index.obs_camera
        for seed in (0, 1):
            env.reset(seed=seed)
            poses[jitter, seed] = np.concatenate([world.model.cam_pos[cam], world.model.cam_quat[cam]])
        env.close()
    assert np.allclose(poses[0.0, 0], poses[0.0, 1])
    assert np.allclose(poses[0.0, 0][:3], layout.CAMERA_EYE)
    assert not np.allclose(poses[0.05, 0], poses[0.05, 1])
    assert np.abs(poses[0.05, 0][:3] - np.array(layout.CAMERA_EYE)).max() <= 0.05


def test_randomised_domains_differ_per_env():
    env = make(num_envs=2, domain=DomainParams(randomize=True))
    env.reset(seed=0)
    frictions = [w.model.geom_friction[0, 0] / w.nominal.geom_friction[0, 0] for w in env.worlds]
    assert frictions == pytest.approx([d.friction_scale for d in env.env_domains])
    assert frictions[0] != pytest.approx(frictions[1])
    env.close()


def test_rgb_observations_and_viewer_frames():
    try:
        env = make("pick_cube", num_envs=2, obs_mode="rgb", image_size=32,
                   domain=DomainParams(camera_pose_jitter=0.05))
    except RuntimeError as e:
        pytest.skip(f"no offscreen OpenGL here: {e}")
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].dtype == torch.uint8 and obs["rgb"].shape == (2, 3, 32, 32)
    assert "obj_pose" not in obs and obs["rgb"].float().std() > 10
    # Different cube positions and camera poses: different images.
    assert (obs["rgb"][0].float() - obs["rgb"][1].float()).abs().mean() > 1.0
    frames = env.render()
    assert frames.dtype == torch.uint8 and frames.shape == (2, layout.RENDER_SIZE, layout.RENDER_SIZE, 3)
    env.close()


@pytest.mark.parametrize("task", tasks.TASKS)
def test_scripted_expert_solves_three_seeds(task):
    # Seeds 0-2. Over 100+ episodes the expert solves push, pick and drawer every time and
    # stack_cube ~97 % (ManiSkill: ~98 %): its open fingers can land on cube B, or the
    # carried cube can sweep B out of reach; both engines share those failures.
    env = make(task, num_envs=3)
    expert = make_expert(task, env.num_envs)
    env.reset(seed=0)
    expert.reset()
    solved = torch.zeros(3, dtype=torch.bool)
    for _ in range(env.episode_length):
        _, _, _, _, info = env.step(expert.act(env.privileged_obs()))
        solved |= info["success"]
    env.close()
    assert solved.all(), f"{task}: solved in {solved.tolist()}"


def test_grasp_detection_needs_both_fingers_pushing():
    env = make("pick_cube")
    expert = make_expert("pick_cube", 1)
    env.reset(seed=0)
    expert.reset()
    world = env.worlds[0]
    geom = env.index.cube_geoms[0]
    assert not world.is_grasping(geom)
    while expert.phase[0] < 3:
        env.step(expert.act(env.privileged_obs()))
    assert world.is_grasping(geom)
    env.close()


def test_urdf_rpy_matches_mujoco_euler_convention():
    rpy = (0.3, -0.7, 1.1)
    quat = np.zeros(4)
    mujoco.mju_euler2Quat(quat, np.array(rpy), "XYZ")  # extrinsic x, then y, then z: URDF's rpy
    assert np.allclose(Origin(rpy=rpy).quat(), quat)
