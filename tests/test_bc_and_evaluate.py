"""Behaviour cloning and the shared evaluation (success counting, MP4 videos, intervals)."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("mujoco")

import tasks  # noqa: E402
from sim2real.bc import BCConfig, BCPolicy, train_bc  # noqa: E402
from sim2real.contract import Contract, Feature  # noqa: E402
from sim2real.data import Episode  # noqa: E402
from sim2real.evaluate import binomial_ci95, evaluate_policy  # noqa: E402
from tasks.experts import make_expert  # noqa: E402
from tasks.spec import TaskConfig  # noqa: E402

TASK = TaskConfig(name="push_cube", episode_length=30)


class Still:
    """Zero actions: never solves push_cube."""

    def act(self, obs):
        return torch.zeros(next(iter(obs.values())).shape[0], 4)

    def reset(self, env_mask=None):
        pass


def test_the_expert_succeeds_and_a_still_arm_does_not_and_a_video_is_written(tmp_path: Path):
    env = tasks.make_env(TASK, backend="mujoco", num_envs=2)
    try:
        expert = make_expert("push_cube", num_envs=2)
        stats = evaluate_policy(expert, env, episodes=3, seed=5, video_path=tmp_path / "v" / "ep.mp4")
        still = evaluate_policy(Still(), env, episodes=2, seed=5)
    finally:
        env.close()
    assert stats.episodes == 3 and stats.success_at_end >= 2 / 3
    assert still.success_once == 0.0 and still.success_at_end == 0.0
    video = tmp_path / "v" / "ep.mp4"
    assert video.stat().st_size > 1000 and not list(video.parent.glob(".*"))  # no temp file left
    import imageio.v2 as imageio
    frames = imageio.mimread(video)
    assert len(frames) == TASK.episode_length + 1 and frames[0].ndim == 3


def test_evaluate_refuses_zero_episodes():
    with pytest.raises(ValueError, match="episodes=0"):
        evaluate_policy(Still(), None, episodes=0, seed=0)


def test_wilson_interval_brackets_the_rate_and_stays_in_0_1():
    lo, hi = binomial_ci95(45, 50)
    assert lo < 0.9 < hi and 0.75 < lo and hi < 0.97
    assert binomial_ci95(0, 20)[0] == 0.0 and binomial_ci95(20, 20)[1] == 1.0


def _line_episodes() -> tuple[Contract, list[Episode]]:
    """Actions are a fixed linear function of the state: BC must fit them."""
    contract = Contract(features={"qpos": Feature((3,))}, action_dim=2)
    gen = torch.Generator().manual_seed(0)
    episodes = []
    for _ in range(4):
        qpos = torch.rand(11, 3, generator=gen) * 2 - 1
        actions = torch.tanh(qpos[:-1, :2] - 0.5 * qpos[:-1, 2:])
        episodes.append(Episode(obs={"qpos": qpos}, actions=actions, rewards=torch.zeros(10),
                                success=torch.zeros(11, dtype=torch.bool)))
    return contract, episodes


def test_bc_fits_expert_actions_and_chunks_execute_open_loop():
    contract, episodes = _line_episodes()
    policy = train_bc(episodes, contract, BCConfig(hidden_dim=64, steps=600, batch_size=32))
    obs = {"qpos": episodes[0].obs["qpos"][:-1]}
    err = (policy.act(obs) - episodes[0].actions).abs().mean()
    untrained = (BCPolicy(contract, BCConfig(hidden_dim=64)).act(obs) - episodes[0].actions).abs().mean()
    assert err < 0.1 < untrained

    chunked = train_bc(episodes, contract, BCConfig(hidden_dim=64, steps=50, batch_size=32, chunk=3))
    first = {"qpos": episodes[0].obs["qpos"][:1]}
    other = {"qpos": episodes[1].obs["qpos"][:1]}
    a0 = chunked.act(first)
    a1 = chunked.act(other)  # second action of the same chunk: the observation is not used
    plan = chunked({"state": first["qpos"]})[0]
    assert torch.allclose(a0[0], plan[0]) and torch.allclose(a1[0], plan[1])
    chunked.reset()
    assert torch.allclose(chunked.act(other)[0], chunked({"state": other["qpos"]})[0, 0])


def test_bc_refuses_no_episodes_and_a_bad_chunk():
    contract, episodes = _line_episodes()
    with pytest.raises(ValueError, match="no episodes"):
        train_bc([], contract, BCConfig())
    with pytest.raises(ValueError, match="chunk=0"):
        BCPolicy(contract, BCConfig(chunk=0))


def test_bc_continues_a_policy_keeping_its_normalisation_and_follows_episode_weights():
    contract, episodes = _line_episodes()
    first = train_bc(episodes[:2], contract, BCConfig(hidden_dim=64, steps=200, batch_size=32))
    mean, std = first.state_mean.clone(), first.state_std.clone()
    # the other episodes' actions flipped: a continued policy must move to them, keeping the statistics
    flipped = [Episode(obs=e.obs, actions=-e.actions, rewards=e.rewards, success=e.success) for e in episodes[2:]]
    second = train_bc(flipped, contract, BCConfig(hidden_dim=64, steps=300, batch_size=32, lr=1e-3), init=first)
    assert second is first and torch.equal(second.state_mean, mean) and torch.equal(second.state_std, std)
    obs = {"qpos": flipped[0].obs["qpos"][:-1]}
    assert (second.act(obs) - flipped[0].actions).abs().mean() < 0.15
    # weight 0 on the original episodes: only the flipped ones are fitted
    mixed = train_bc(episodes[:2] + flipped, contract, BCConfig(hidden_dim=64, steps=600, batch_size=32),
                     episode_weights=[0.0, 0.0, 1.0, 1.0])
    assert (mixed.act(obs) - flipped[0].actions).abs().mean() < 0.15
    with pytest.raises(ValueError, match="episode_weights needs 4 non-negative weights"):
        train_bc(episodes, contract, BCConfig(steps=1), episode_weights=[1.0, 1.0])
