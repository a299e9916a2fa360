import io

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from sim2real.config import ModelConfig, PlannerConfig, load_preset
from sim2real.imitation import (CdredConfig, CdredObjective, IqConfig, IqObjective, LatentRollout, Objective,
                                make_objective)
from sim2real.planner import plan
from sim2real.world_model import WorldModel

S, A, H, GAMMA, RHO = 10, 3, 3, 0.95, 0.5
# Small predictors so the tests stay fast; the presets use wider ones.
SMALL_CDRED = CdredConfig(rnd_dim=32, reward_mlp_dim=64, num_reward_layers=2)


class ToyTask:
    """Linear dynamics s' = 0.9 s + a P. The expert starts near one point and acts a = tanh(s W);
    the "online" agent starts anywhere and acts uniformly at random."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(123)
        self.P = 0.5 * torch.randn(A, S, generator=gen)
        self.W = torch.randn(S, A, generator=gen)
        self.centre = torch.randn(S, generator=gen)

    def rollout(self, n: int, expert: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [H+1, n, S], actions [H, n, A]."""
        s = self.centre + 0.3 * torch.randn(n, S) if expert else 1.5 * torch.randn(n, S)
        obs, actions = [s], []
        for _ in range(H):
            a = torch.tanh(s @ self.W) if expert else torch.rand(n, A) * 2 - 1
            s = 0.9 * s + a @ self.P
            obs.append(s)
            actions.append(a)
        return torch.stack(obs), torch.stack(actions)

    def mixed_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n expert slices, then n online slices."""
        (oe, ae), (oo, ao) = self.rollout(n, True), self.rollout(n, False)
        return torch.cat([oe, oo], dim=1), torch.cat([ae, ao], dim=1)


def latent_rollout(model: WorldModel, obs: torch.Tensor, actions: torch.Tensor,
                   terminated: torch.Tensor | None = None) -> tuple[LatentRollout, torch.Tensor]:
    """What the agent builds for the objective, plus the consistency loss."""
    n = obs.shape[1]
    with torch.no_grad():
        next_z = model.encode({"state": obs[1:].reshape(-1, S)}).view(H, n, -1)
    z = model.encode({"state": obs[0]})
    zs, consistency = [z], torch.zeros(())
    for t in range(H):
        z = model.next(z, actions[t])
        consistency = consistency + RHO ** t * F.mse_loss(z, next_z[t])
        zs.append(z)
    if terminated is None:
        terminated = torch.zeros(H, n, dtype=torch.bool)
    rollout = LatentRollout(zs=torch.stack(zs), next_z=next_z, actions=actions, terminated=terminated,
                            num_expert=n // 2, rho=RHO, discount=GAMMA)
    return rollout, consistency / H


def critic_params(model: WorldModel, objective: Objective) -> list[torch.nn.Parameter]:
    return [*model._encoder.parameters(), *model._dynamics.parameters(), *model._Qs.parameters(),
            *objective.parameters()]


def train(model: WorldModel, objective: Objective, task: ToyTask, steps: int, n: int = 64) -> None:
    """The agent's update, in brief: consistency + critic step, policy step, Polyak update."""
    optim = torch.optim.Adam(critic_params(model, objective), lr=1e-3)
    pi_optim = torch.optim.Adam(model._pi.parameters(), lr=1e-3)
    for _ in range(steps):
        rollout, consistency = latent_rollout(model, *task.mixed_batch(n))
        loss, _ = objective.critic_loss(model, rollout)
        optim.zero_grad()
        (20 * consistency + loss).backward()
        optim.step()
        pi_loss, _ = objective.policy_loss(model, rollout.zs.detach(), RHO)
        pi_optim.zero_grad()
        pi_loss.backward()
        pi_optim.step()
        model.update_target_Q()


def heldout_rewards(model: WorldModel, objective: Objective, task: ToyTask,
                    n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of n fresh expert and n fresh online first transitions, in one call: the Q
    members drawn for min-of-2 then are the same for both."""
    obs, actions = task.mixed_batch(n)
    with torch.no_grad():
        z = model.encode({"state": obs[0]})
    reward = objective.reward(model, z, actions[0]).squeeze(-1)
    return reward[:n], reward[n:]


@pytest.fixture
def world(small_cfg: ModelConfig) -> WorldModel:
    return WorldModel(small_cfg, {"state": (S,)}, A)


OBJECTIVES = {
    "cdred": SMALL_CDRED,
    "iq": IqConfig(),
    "iq-gradpen-no-v0": IqConfig(grad_pen=True, use_v0=False),
}


@pytest.mark.parametrize("cfg", OBJECTIVES.values(), ids=OBJECTIVES.keys())
def test_critic_loss_decreases_on_a_fixed_batch(world: WorldModel, cfg):
    objective = make_objective(cfg, world)
    obs, actions = ToyTask().mixed_batch(32)
    optim = torch.optim.Adam(critic_params(world, objective), lr=1e-3)
    losses = []
    for _ in range(40):
        rollout, _ = latent_rollout(world, obs, actions)
        loss, metrics = objective.critic_loss(world, rollout)
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert all(isinstance(v, float) and v == v for v in metrics.values()), metrics
        optim.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in critic_params(world, objective) if p.grad is not None)
        optim.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < losses[0], losses
    assert "reward_expert" in metrics and "reward_online" in metrics


@pytest.mark.parametrize("cfg", [SMALL_CDRED, IqConfig()], ids=["cdred", "iq"])
def test_policy_loss_trains_only_the_policy_prior(world: WorldModel, cfg):
    objective = make_objective(cfg, world)
    rollout, _ = latent_rollout(world, *ToyTask().mixed_batch(16))
    loss, metrics = objective.policy_loss(world, rollout.zs.detach(), RHO)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in world._pi.parameters())
    assert any(p.grad.abs().sum() > 0 for p in world._pi.parameters())
    others = [p for n, p in world.named_parameters() if not n.startswith("_pi.")] + list(objective.parameters())
    assert all(p.grad is None for p in others)
    # CDRED normalises Q by the running scale (and updates it); IQ-MPC does not.
    assert bool(world.scale.initialized) == isinstance(objective, CdredObjective)
    assert ("pi_scale" in metrics) == isinstance(objective, CdredObjective)


def test_cdred_reward_is_higher_on_expert_transitions(world: WorldModel):
    task = ToyTask()
    objective = make_objective(SMALL_CDRED, world)
    train(world, objective, task, steps=150)
    expert, random = heldout_rewards(world, objective, task)
    assert torch.isfinite(expert).all() and torch.isfinite(random).all()
    assert expert.mean() > random.mean()
    # Most expert transitions outscore most random ones, not just on average.
    assert (expert.unsqueeze(1) > random.unsqueeze(0)).float().mean() > 0.8


def test_iq_recovered_reward_is_higher_on_expert_transitions(world: WorldModel):
    task = ToyTask()
    objective = make_objective(IqConfig(), world)
    train(world, objective, task, steps=150)
    expert, random = heldout_rewards(world, objective, task)
    assert torch.isfinite(expert).all() and torch.isfinite(random).all()
    assert expert.mean() > random.mean()
    assert (expert.unsqueeze(1) > random.unsqueeze(0)).float().mean() > 0.8


def test_cdred_reward_couples_expert_and_behavioural_fit():
    objective = CdredObjective(SMALL_CDRED, latent_dim=8, action_dim=2, mlp_dim=16)
    targets = torch.randn(SMALL_CDRED.num_targets, 6, SMALL_CDRED.rnd_dim)
    mu = targets.mean(dim=0)
    off = mu + torch.randn_like(mu)

    def r(expert_pred, online_pred):
        return objective.coupled_reward(targets, torch.stack([expert_pred, online_pred])).squeeze(-1)

    assert torch.allclose(r(mu, mu), torch.zeros(6), atol=1e-5)  # both fit the targets: no bias either way
    assert (r(off, mu) < 0).all()  # the expert predictor has not seen x: penalised
    assert (r(mu, off) > 0).all()  # the agent has not visited x: a bonus
    # The bias by hand: alpha * sum sq. error + (1 - alpha) * mean sqrt(|f^2 - mu^2| / var).
    var = ((targets - mu) ** 2).mean(dim=0)
    bias = 0.9 * ((off - mu) ** 2).sum(-1) + 0.1 * ((off ** 2 - mu ** 2).abs() / var).sqrt().mean(-1)
    torch.testing.assert_close(r(off, mu), -0.8 * bias)


def test_cdred_targets_are_buffers_that_survive_a_checkpoint(world: WorldModel):
    first = make_objective(CdredConfig(rnd_dim=32, reward_mlp_dim=64, num_reward_layers=2, target_seed=0), world)
    other = make_objective(CdredConfig(rnd_dim=32, reward_mlp_dim=64, num_reward_layers=2, target_seed=1), world)
    target_names = {n for n, _ in first.named_buffers() if n.startswith("target_")}
    assert len(target_names) == 6 and target_names <= set(first.state_dict())
    assert not any(n.startswith("target_") for n, _ in first.named_parameters())
    z = world.encode({"state": torch.randn(16, S)}).detach()
    a = torch.rand(16, A) * 2 - 1
    assert not torch.equal(first.reward(world, z, a), other.reward(world, z, a))

    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf))
    torch.testing.assert_close(other.reward(world, z, a), first.reward(world, z, a), rtol=0, atol=0)

    # Training moves the predictors but never the targets.
    before = {n: b.clone() for n, b in first.named_buffers()}
    train(world, first, ToyTask(), steps=3, n=8)
    assert all(torch.equal(before[n], b) for n, b in first.named_buffers())


@pytest.mark.parametrize("cfg", [SMALL_CDRED, IqConfig()], ids=["cdred", "iq"])
def test_terminal_steps_do_not_bootstrap(world: WorldModel, cfg):
    # With every step terminal, nothing is bootstrapped: CDRED's TD target is the reward
    # alone, and the reward IQ's loss implies is Q itself.
    objective = make_objective(cfg, world)
    obs, actions = ToyTask().mixed_batch(8)
    rollout, _ = latent_rollout(world, obs, actions, terminated=torch.ones(H, 16, dtype=torch.bool))
    _, metrics = objective.critic_loss(world, rollout)
    if isinstance(objective, IqObjective):
        assert metrics["reward_expert"] == metrics["q_expert"]
        assert metrics["reward_online"] == metrics["q_online"]
    else:
        expected = (metrics["reward_expert"] + metrics["reward_online"]) / 2
        assert metrics["td_target"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cfg", [SMALL_CDRED, IqConfig()], ids=["cdred", "iq"])
def test_value_fn_drives_the_planner(world: WorldModel, cfg):
    objective = make_objective(cfg, world)
    z = world.encode({"state": torch.randn(2, S)}).detach()
    actions = torch.rand(H, 2, 5, A) * 2 - 1
    value = objective.value_fn(GAMMA)(world, z.unsqueeze(1).expand(2, 5, -1), actions)
    assert value.shape == (2, 5) and torch.isfinite(value).all()
    planner_cfg = PlannerConfig(horizon=H, iterations=2, num_samples=32, num_elites=4, num_pi_trajs=4)
    result = plan(world, z, objective.value_fn(GAMMA), None, planner_cfg)
    assert result.action.shape == (2, A)
    assert objective.reward(world, z, result.action).shape == (2, 1)


def test_iq_reward_needs_a_discount(world: WorldModel):
    objective = make_objective(IqConfig(), world)
    z = world.encode({"state": torch.randn(4, S)}).detach()
    a = torch.zeros(4, A)
    with pytest.raises(ValueError, match="discount"):
        objective.reward(world, z, a)
    assert objective.reward(world, z, a, discount=GAMMA).shape == (4, 1)


def test_make_objective_picks_by_name(world: WorldModel):
    assert isinstance(make_objective(CdredConfig(reward_mlp_dim=32), world), CdredObjective)
    assert isinstance(make_objective(IqConfig(), world), IqObjective)
    node = OmegaConf.create({"name": "iq", "chi2_alpha": 0.25})
    objective = make_objective(node, world)
    assert isinstance(objective, IqObjective) and objective.cfg.chi2_alpha == 0.25
    assert list(objective.parameters()) == []
    with pytest.raises(ValueError, match="objective.name"):
        make_objective(OmegaConf.create({"name": "gail"}), world)
    with pytest.raises(ValueError, match="num_targets"):
        make_objective(CdredConfig(num_targets=1), world)


def test_presets_load():
    cdred = load_preset("objective", "cdred", CdredConfig)
    assert (cdred.name, cdred.num_targets, cdred.expert_coef, cdred.reward_ema_coef) == ("cdred", 5, 0.8, 0.9)
    iq = load_preset("objective", "iq", IqConfig)
    assert (iq.name, iq.chi2_alpha, iq.use_v0, iq.grad_pen) == ("iq", 0.5, True, False)


def test_rollout_shapes_are_checked(world: WorldModel):
    obs, actions = ToyTask().mixed_batch(4)
    rollout, _ = latent_rollout(world, obs, actions)
    with pytest.raises(ValueError, match="next_z"):
        LatentRollout(rollout.zs, rollout.next_z[:-1], actions, rollout.terminated, 4, RHO, GAMMA)
    with pytest.raises(ValueError, match="num_expert"):
        LatentRollout(rollout.zs, rollout.next_z, actions, rollout.terminated, 8, RHO, GAMMA)


def _reference_cdred_critic_loss(objective: CdredObjective, model: WorldModel,
                                 batch: LatentRollout) -> torch.Tensor:
    """CDRED's critic loss as computed before the update was made cheaper: both predictors on
    every row without gradients for the reward, again with gradients for the distillation,
    and the two-hot cross-entropy against a dense (scattered) target. Same RNG draws, same order."""
    cfg, b, h = objective.cfg, batch.num_expert, batch.horizon
    weights = RHO ** torch.arange(h, dtype=torch.float32)
    x = torch.cat([batch.zs[:-1], batch.actions], dim=-1)
    with torch.no_grad():
        features = objective.targets(x)
        reward = objective.coupled_reward(features, objective.predictors(x))
        next_action, _ = model.pi(batch.next_z)
        next_q = model.Q(batch.next_z, next_action, return_type="min", target=True)
        td_target = reward + batch.discount * batch.continues() * next_q
    logits = model.Q(batch.zs[:-1], batch.actions, return_type="all")
    two_hot = model.two_hot
    y = torch.log1p(td_target.abs()).mul(torch.sign(td_target)).squeeze(-1).clamp(two_hot.vmin, two_hot.vmax)
    pos = (y - two_hot.vmin) / two_hot.bin_size
    lower = pos.floor().clamp(max=two_hot.num_bins - 2)
    dense = torch.zeros(*y.shape, two_hot.num_bins)
    dense.scatter_(-1, lower.long().unsqueeze(-1), (1.0 - (pos - lower)).unsqueeze(-1))
    dense.scatter_add_(-1, lower.long().unsqueeze(-1) + 1, (pos - lower).unsqueeze(-1))
    ce = -(dense * torch.log_softmax(logits, dim=-1)).sum(-1, keepdim=True).mean(dim=(2, 3))
    q_loss = (ce * weights).sum(dim=1).mean() / h
    k = torch.randint(cfg.num_targets, x.shape[:2])
    chosen = features.gather(0, k[None, ..., None].expand(1, *features.shape[1:]))[0]
    idx = torch.zeros(1, dtype=torch.long)
    rnd_expert = (objective.predictors(x[:, :b], members=idx)[0] - chosen[:, :b]).pow(2).mean(dim=(1, 2))
    rnd_online = (objective.predictors(x[:, b:], members=idx + 1)[0] - chosen[:, b:]).pow(2).mean(dim=(1, 2))
    rnd_loss = ((rnd_expert + rnd_online) * weights).sum() / h
    return cfg.value_coef * q_loss + cfg.rnd_coef * rnd_loss


def test_cdred_critic_loss_and_gradients_match_the_uncached_computation(world: WorldModel):
    # The update reuses the distillation passes' predictions for the reward and gathers the
    # two-hot cross-entropy: an implementation change, so the loss and every gradient must
    # be the ones the straightforward computation gives (dropout on, same RNG draws).
    torch.manual_seed(0)
    objective = make_objective(CdredConfig(rnd_dim=32, reward_mlp_dim=64, target_seed=0), world)
    world.train()
    for step in range(3):  # a few optimiser steps, so the targets and predictors are not at init
        rollout, _ = latent_rollout(world, *ToyTask().mixed_batch(16))
        params = critic_params(world, objective)
        state = torch.get_rng_state()
        loss, _ = objective.critic_loss(world, rollout)
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        torch.set_rng_state(state)
        reference = _reference_cdred_critic_loss(objective, world, rollout)
        grads_ref = torch.autograd.grad(reference, params, allow_unused=True)
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
        for g, g_ref in zip(grads, grads_ref):
            if g_ref is None:
                assert g is None
            else:
                torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p -= 1e-2 * g
