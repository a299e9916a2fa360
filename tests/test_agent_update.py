"""One agent update: what the prior's step computes with and without its Q term."""

import torch

from sim2real.agent import Agent, AgentConfig
from sim2real.buffer import SliceBatch
from sim2real.config import ModelConfig, PlannerConfig
from sim2real.imitation import CdredConfig, make_objective
from sim2real.world_model import WorldModel
from tasks.spec import task_contract


def make_agent(pi_q_coef: float) -> tuple[Agent, SliceBatch]:
    torch.manual_seed(0)
    contract = task_contract("push_cube")
    model = WorldModel(ModelConfig(latent_dim=16, enc_dim=16, mlp_dim=16), contract.model_obs_shapes(),
                       contract.action_dim)
    objective = make_objective(CdredConfig(target_seed=0), model)
    agent = Agent(model, objective, contract, AgentConfig(batch_size=4, bc_coef=10.0, pi_q_coef=pi_q_coef),
                  PlannerConfig(mpc=False), discount=0.95)
    obs = {k: torch.randn(4, 8, *f.shape) for k, f in contract.features.items()}
    batch = SliceBatch(obs=obs, actions=torch.rand(3, 8, contract.action_dim) * 2 - 1,
                       terminated=torch.zeros(3, 8, dtype=torch.bool), rewards=torch.zeros(3, 8))
    return agent, batch


def test_without_its_q_term_the_prior_takes_exactly_the_cloning_step():
    # pi_q_coef=0 skips the objective's prior loss (a third of an update) instead of weighting
    # it by zero: the prior must move exactly as a pure cloning step on the same latents moves it.
    agent, batch = make_agent(pi_q_coef=0.0)
    calls = []
    original = agent.objective.policy_loss
    agent.objective.policy_loss = lambda *a, **k: calls.append(1) or original(*a, **k)
    metrics = agent.update(batch, num_expert=4)
    assert not calls and "pi_q" not in metrics

    # The reference, from the same initial weights: clone the expert's actions at the latents
    # the encoder gave before the critic's step (what the prior acts on), then one Adam step.
    ref, _ = make_agent(pi_q_coef=0.0)
    with torch.no_grad():
        z = ref.encode_batch(batch.obs)
    loss = ref.cfg.bc_coef * ref._bc_loss(z[:-1, :4], batch.actions[:, :4])
    assert abs(metrics["pi_loss"] - float(loss.detach())) < 1e-5
    ref.pi_optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(ref.model._pi.parameters(), ref.cfg.grad_clip_norm)
    ref.pi_optim.step()
    for p, q in zip(agent.model._pi.parameters(), ref.model._pi.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_with_its_q_term_the_prior_also_follows_the_critic():
    with_q, batch = make_agent(pi_q_coef=1.0)
    without_q, _ = make_agent(pi_q_coef=0.0)
    metrics = with_q.update(batch, num_expert=4)
    without_q.update(batch, num_expert=4)
    assert "pi_q" in metrics and metrics["pi_loss"] != 0.0
    assert any(not torch.equal(p, q) for p, q in zip(with_q.model._pi.parameters(), without_q.model._pi.parameters()))
