"""The engine-independent part of every env (tasks/env.py), on a point-mass stand-in backend.

The stand-in moves its "TCP" by exactly the executed action, so what the base class does
to actions (latency, noise, clipping) and observations (noise, shapes) can be read off.
"""

import pytest
import torch

import tasks
from tasks.domain import DomainParams
from tasks.env import TaskEnv
from tasks.spec import state_features


class PointEnv(TaskEnv):
    backend = "point"

    def __init__(self, **kwargs):
        super().__init__("push_cube", **kwargs)
        self.executed: list[torch.Tensor] = []
        self.pos = torch.zeros(self.num_envs, 3)

    def _reset_envs(self, env_ids, seed):
        self.pos[env_ids] = 0.0

    def _apply_action(self, action):
        self.executed.append(action.clone())
        self.pos += action[:, :3]

    def _state(self):
        state = {name: torch.zeros(self.num_envs, *f.shape) for name, f in state_features(self.task).items()}
        state["tcp_pose"][:, :3] = self.pos
        return state

    def _evaluate(self):
        return {"success": self.pos[:, 0] > 1.5}


def test_obs_follow_the_contract_and_time_limit_truncates():
    env = PointEnv(num_envs=3, episode_length=4)
    obs, info = env.reset(seed=0)
    assert set(obs) == set(tasks.task_contract("push_cube").features)
    assert all(v.shape[0] == 3 and v.dtype == torch.float32 for v in obs.values())
    truncs = []
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(torch.ones(3, 4))
        truncs.append(truncated.tolist())
        assert reward.shape == (3,) and terminated.dtype == torch.bool and not terminated.any()
    assert truncs == [[False] * 3] * 3 + [[True] * 3]
    assert info["success"].all() and torch.equal(reward, torch.ones(3))


def test_terminate_on_success_sets_terminated_only_where_solved():
    env = PointEnv(num_envs=2, terminate_on_success=True)
    env.reset()
    for _ in range(2):
        _, _, terminated, _, _ = env.step(torch.tensor([[1.0, 0, 0, 1], [0.0, 0, 0, 1]]))
    assert terminated.tolist() == [True, False]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_action_latency_delays_the_response_by_exactly_k_steps(k):
    env = PointEnv(num_envs=1, domain=DomainParams(action_latency_steps=k))
    env.reset()
    xs = []
    for t in range(6):
        action = torch.tensor([[1.0, 0, 0, -1.0]]) if t == 0 else torch.tensor([[0.0, 0, 0, -1.0]])
        obs, *_ = env.step(action)
        xs.append(obs["tcp_pose"][0, 0].item())
    assert xs == [0.0] * k + [1.0] * (6 - k)
    # Before the first issued action arrives the env executes the hold action: still, gripper open.
    assert all(torch.equal(a, torch.tensor([[0.0, 0, 0, 1.0]])) for a in env.executed[:k])


def test_partial_reset_refills_only_that_envs_latency_queue():
    env = PointEnv(num_envs=2, domain=DomainParams(action_latency_steps=1))
    env.reset()
    env.step(torch.full((2, 4), 0.5))
    env.reset(env_mask=torch.tensor([True, False]))
    env.step(torch.zeros(2, 4))
    assert env.executed[-1][:, 0].tolist() == [0.0, 0.5]
    assert env.elapsed_steps.tolist() == [1, 2]


def test_observation_noise_has_the_configured_std_and_spares_nothing_else():
    env = PointEnv(num_envs=64, domain=DomainParams(obs_noise_std=0.05))
    obs, _ = env.reset(seed=1)
    residual = torch.cat([(obs[k] - v).flatten() for k, v in env.privileged_obs().items()])
    assert residual.numel() > 2000
    assert abs(residual.std().item() - 0.05) < 0.005 and abs(residual.mean().item()) < 0.005


def test_action_noise_has_the_configured_std():
    env = PointEnv(num_envs=256, domain=DomainParams(action_noise_std=0.1))
    env.reset(seed=2)
    for _ in range(4):
        env.step(torch.zeros(256, 4))
    motion = torch.stack(env.executed)[..., :3]
    assert abs(motion.std().item() - 0.1) < 0.005
    clipped = PointEnv(num_envs=8, domain=DomainParams(action_noise_std=0.5))
    clipped.reset()
    clipped.step(torch.ones(8, 4))
    assert clipped.executed[-1].max() <= 1.0


def test_randomized_domains_draw_per_env_and_per_episode():
    domain = DomainParams(randomize=True)
    env = PointEnv(num_envs=8, domain=domain)
    env.reset(seed=3)
    first = [d.friction_scale for d in env.env_domains]
    assert len(set(first)) == 8 and all(0.5 <= f <= 1.5 for f in first)
    latencies = {d.action_latency_steps for d in env.env_domains}
    assert latencies <= {0, 1, 2}
    env.reset(seed=4)
    assert [d.friction_scale for d in env.env_domains] != first


def test_bad_actions_are_refused_with_the_expected_shape():
    env = PointEnv(num_envs=2)
    env.reset()
    with pytest.raises(ValueError, match=r"expected \[num_envs=2, action_dim=4\]"):
        env.step(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.full((2, 4), float("nan")))


def test_make_env_names_what_is_unknown():
    with pytest.raises(ValueError, match="unknown task 'fold_laundry'"):
        tasks.make_env("fold_laundry")
    with pytest.raises(ValueError, match="unknown backend 'bullet'"):
        tasks.make_env("push_cube", backend="bullet")


def test_contracts_differ_by_obs_mode_and_control_mode():
    state = tasks.task_contract("pick_cube")
    rgb = tasks.task_contract("pick_cube", "rgb", image_size=32)
    joint = tasks.task_contract("pick_cube", control_mode="pd_joint_delta_pos")
    assert "obj_pose" in state.features and "obj_pose" not in rgb.features
    assert rgb.features["rgb"].shape == (3, 32, 32) and rgb.features["rgb"].kind == "rgb"
    assert state.action_dim == 4 and joint.action_dim == 8
