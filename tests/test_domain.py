import pytest
import torch

from sim2real.config import load_preset
from tasks.domain import ActionDelay, DomainParams, add_noise


def test_named_domains_compose_and_override():
    source = load_preset("domain", "source", DomainParams)
    assert source == DomainParams()
    target = load_preset("domain", "target", DomainParams)
    assert target.name == "target" and target.action_latency_steps == 1 and target.friction_scale < 1
    assert set(target.values()) == {
        "friction_scale", "object_mass_scale", "joint_damping_scale", "controller_gain_scale",
        "action_latency_steps", "obs_noise_std", "action_noise_std", "object_size_scale", "camera_pose_jitter",
        "init_range_scale"}


@pytest.mark.parametrize("field,value,match", [
    ("friction_scale", 0.0, "domain.friction_scale=0.0: a scale must be"),
    ("object_mass_scale", float("nan"), "domain.object_mass_scale=nan"),
    ("obs_noise_std", -0.1, "domain.obs_noise_std=-0.1"),
    ("action_latency_steps", -1, "domain.action_latency_steps=-1"),
])
def test_invalid_values_name_the_field(field: str, value: float, match: str):
    with pytest.raises(ValueError, match=match):
        DomainParams(**{field: value})


def test_randomisation_draws_within_ranges_and_is_seeded():
    domain = DomainParams(randomize=True)
    draws = domain.sample(64, torch.Generator().manual_seed(0))
    again = domain.sample(64, torch.Generator().manual_seed(0))
    assert [d.values() for d in draws] == [d.values() for d in again]
    for d in draws:
        assert 0.5 <= d.friction_scale <= 1.5 and d.action_latency_steps in (0, 1, 2)
    assert {d.action_latency_steps for d in draws} == {0, 1, 2}
    assert len({d.friction_scale for d in draws}) == 64
    assert DomainParams().sample(3) == [DomainParams()] * 3


@pytest.mark.parametrize("k", [0, 1, 3])
def test_action_delay_is_exactly_k_steps(k: int):
    hold = torch.tensor([0.0, 0.0, -1.0])
    delay = ActionDelay(k, num_envs=2, hold_action=hold)
    issued = [torch.full((2, 3), float(t + 1)) for t in range(6)]
    executed = [delay.step(a) for a in issued]
    for t in range(6):
        expected = issued[t - k] if t >= k else hold.expand(2, 3)
        assert torch.equal(executed[t], expected), (t, executed[t])


def test_action_delay_resets_per_env():
    hold = torch.zeros(2)
    delay = ActionDelay(2, num_envs=2, hold_action=hold)
    delay.step(torch.ones(2, 2))
    delay.reset(torch.tensor([True, False]))
    out = delay.step(torch.ones(2, 2))
    assert torch.equal(out, torch.zeros(2, 2))
    out = delay.step(torch.ones(2, 2))
    assert torch.equal(out[0], torch.zeros(2)) and torch.equal(out[1], torch.ones(2))


def test_noise_has_the_configured_std():
    x = torch.zeros(200_000)
    noisy = add_noise(x, 0.05, torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.05) < 0.001 and abs(noisy.mean().item()) < 0.001
    assert add_noise(x, 0.0) is x


def test_action_delay_per_env_steps():
    hold = torch.zeros(1)
    delay = ActionDelay(torch.tensor([0, 1, 3]), num_envs=3, hold_action=hold)
    issued = [torch.full((3, 1), float(t + 1)) for t in range(6)]
    executed = torch.stack([delay.step(a) for a in issued])[..., 0]  # [T, N]
    for i, k in enumerate([0, 1, 3]):
        expected = [float(t + 1 - k) if t >= k else 0.0 for t in range(6)]
        assert executed[:, i].tolist() == expected, (i, executed[:, i])
    delay.set_steps(torch.tensor([2, 2, 2]))
    delay.reset()
    out = [delay.step(torch.full((3, 1), 9.0))[:, 0].tolist() for _ in range(3)]
    assert out == [[0.0] * 3, [0.0] * 3, [9.0] * 3]
