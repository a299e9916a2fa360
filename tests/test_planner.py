import pytest
import torch

from sim2real.config import PlannerConfig
from sim2real.planner import Planner, discount_from_episode_length, plan, td_value
from sim2real.world_model import WorldModel

OPTIMUM = torch.tensor([0.6, -0.4, 0.1, -0.8])


def bowl(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A quadratic bowl in action space with its optimum at OPTIMUM, at every latent."""
    return -(a - OPTIMUM).pow(2).sum(-1, keepdim=True)


def _latents(model: WorldModel, n: int) -> torch.Tensor:
    return model.encode({"state": torch.randn(n, 16)})


def test_mppi_finds_the_optimum_of_a_quadratic_bowl(model: WorldModel):
    model.eval()
    z = _latents(model, 3)
    value = td_value(bowl, discount=0.95)
    result = plan(model, z, value, None, PlannerConfig())
    err_mppi = (result.action - OPTIMUM).norm(dim=-1)
    random_actions = torch.rand(1000, 4) * 2 - 1
    err_random = (random_actions - OPTIMUM).norm(dim=-1)
    # The executed action is one elite drawn by score, so it scatters around the optimum...
    assert (err_mppi < 0.25).all(), err_mppi
    assert err_mppi.max() < err_random.quantile(0.01), "MPPI must beat 99% of random actions"
    assert result.mean.shape == result.std.shape == (3, 3, 4)
    # ...while the refitted mean converges on it at every step of the horizon.
    assert ((result.mean - OPTIMUM).abs() < 0.1).all()


@torch.no_grad()
def test_mppi_beats_random_on_a_latent_goal(model: WorldModel):
    """Reward = closeness of the next latent to a reachable goal latent."""
    model.eval()
    z = _latents(model, 1)
    goal_action = torch.tensor([[0.9, -0.9, 0.5, 0.0]])
    goal = model.next(z, goal_action)

    def reward(zz: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return -(model.next(zz, a) - goal).pow(2).sum(-1, keepdim=True)

    action = plan(model, z, td_value(reward, 0.9), None, PlannerConfig(horizon=1)).action
    mppi_dist = float(reward(z, action))
    random_dist = reward(z.expand(500, -1), torch.rand(500, 4) * 2 - 1).squeeze(-1)
    assert mppi_dist > random_dist.quantile(0.95)


def test_plan_is_deterministic_under_a_seed(model: WorldModel):
    z = _latents(model, 2)
    value = td_value(bowl, 0.95)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        r = plan(model, z, value, None, PlannerConfig(num_samples=64, num_elites=8, num_pi_trajs=4), explore=True)
        runs.append((r.action, r.mean, r.std))
    for x, y in zip(*runs):
        assert torch.equal(x, y)
    torch.manual_seed(124)
    other = plan(model, z, value, None, PlannerConfig(num_samples=64, num_elites=8, num_pi_trajs=4), explore=True)
    assert not torch.equal(other.action, runs[0][0])


def test_warm_start_shifts_the_previous_mean(model: WorldModel):
    z = _latents(model, 1)
    seen = {}

    def spy(m, zs, actions):
        seen.setdefault("first", actions[:, :, -1].clone())  # a Gaussian sample of iteration 1
        return bowl(zs, actions[0]).squeeze(-1)

    prev = torch.tensor([[[0.1] * 4], [[0.5] * 4], [[-0.7] * 4]])  # [H=3, N=1, A=4]
    cfg = PlannerConfig(iterations=1, min_std=1e-6, max_std=1e-6, num_samples=8, num_elites=2, num_pi_trajs=0)
    plan(model, z, spy, prev, cfg)
    torch.testing.assert_close(seen["first"][:, 0], torch.tensor([[0.5] * 4, [-0.7] * 4, [0.0] * 4]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prev_mean has shape"):
        plan(model, z, spy, torch.zeros(2, 1, 4), cfg)


def test_policy_prior_mode(model: WorldModel):
    z = _latents(model, 5)
    result = plan(model, z, td_value(bowl, 0.95), None, PlannerConfig(mpc=False))
    torch.testing.assert_close(result.action, model.pi(z)[1].mean)
    assert result.mean is None and result.std is None
    explored = plan(model, z, td_value(bowl, 0.95), None, PlannerConfig(mpc=False), explore=True)
    assert explored.action.shape == (5, 4) and not torch.equal(explored.action, result.action)


def test_bf16_planning_stays_close(model: WorldModel):
    z = _latents(model, 2)
    result = plan(model, z, td_value(bowl, 0.95), None, PlannerConfig(bf16=True))
    assert result.action.dtype == torch.float32
    assert ((result.action - OPTIMUM).norm(dim=-1) < 0.3).all()


def test_planner_wrapper_keeps_and_resets_warm_start(model: WorldModel):
    planner = Planner(model, td_value(bowl, 0.95), PlannerConfig(num_samples=32, num_elites=4, num_pi_trajs=2))
    obs = {"state": torch.randn(3, 16)}
    actions = planner.act(obs)
    assert actions.shape == (3, 4) and planner.prev_mean.shape == (3, 3, 4)
    planner.reset(torch.tensor([False, True, False]))
    assert torch.equal(planner.prev_mean[:, 1], torch.zeros(3, 4))
    assert planner.prev_mean[:, 0].abs().sum() > 0
    planner.reset()
    assert planner.prev_mean is None


def test_discount_heuristic():
    assert discount_from_episode_length(100) == pytest.approx(0.95)
    assert discount_from_episode_length(500) == pytest.approx(0.99)
    assert discount_from_episode_length(10_000) == pytest.approx(0.995)
    assert discount_from_episode_length(10) == pytest.approx(0.95)
