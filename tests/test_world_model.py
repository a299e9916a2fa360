import pytest
import torch

from sim2real.config import ModelConfig
from sim2real.world_model import STATE_STD_FLOOR, WorldModel

B, A = 6, 4


def _obs(shapes: dict) -> dict:
    obs = {}
    if "state" in shapes:
        obs["state"] = torch.randn(B, *shapes["state"])
    if "rgb" in shapes:
        obs["rgb"] = torch.randint(0, 256, (B, *shapes["rgb"]), dtype=torch.uint8)
    return obs


@pytest.mark.parametrize("shapes", [
    {"state": (16,)},
    {"rgb": (3, 64, 64)},
    {"rgb": (9, 64, 64)},  # three stacked frames
    {"state": (16,), "rgb": (3, 64, 64)},
], ids=["state", "rgb", "rgb-stacked", "state+rgb"])
def test_component_shapes(small_cfg: ModelConfig, shapes: dict):
    model = WorldModel(small_cfg, shapes, A)
    z = model.encode(_obs(shapes))
    assert z.shape == (B, small_cfg.latent_dim)
    torch.testing.assert_close(z.view(B, -1, small_cfg.simnorm_dim).sum(-1), torch.ones(B, small_cfg.latent_dim // 8))
    a = torch.rand(B, A) * 2 - 1
    assert model.next(z, a).shape == (B, small_cfg.latent_dim)
    action, info = model.pi(z)
    assert action.shape == info.mean.shape == info.log_std.shape == (B, A)
    assert info.log_prob.shape == (B, 1) and torch.isfinite(info.log_prob).all()
    assert (action.abs() < 1).all()
    for rt in ("min", "avg"):
        assert model.Q(z, a, rt).shape == (B, 1)
        assert model.Q(z, a, rt, target=True).shape == (B, 1)
    assert model.Q(z, a, "all").shape == (small_cfg.num_q, B, small_cfg.num_bins)


def test_rgb_at_5m_is_the_td_mpc2_conv_stack():
    cfg = ModelConfig(latent_dim=512, enc_dim=256, mlp_dim=64)
    model = WorldModel(cfg, {"rgb": (3, 64, 64)}, A)
    # 32 channels x 4 x 4 = 512 = latent_dim: no projection layer, SimNorm directly.
    assert not any(isinstance(m, torch.nn.Linear) for m in model._encoder.modules())
    assert model.encode(_obs({"rgb": (3, 64, 64)})).shape == (B, 512)


def test_batched_leading_dims(model: WorldModel):
    z = torch.softmax(torch.randn(2, 5, 32).view(2, 5, 4, 8), -1).view(2, 5, 32)
    a = torch.rand(2, 5, A)
    assert model.next(z, a).shape == (2, 5, 32)
    assert model.pi(z)[0].shape == (2, 5, A)
    assert model.Q(z, a, "avg").shape == (2, 5, 1)


def test_deterministic_pi_returns_the_mean(model: WorldModel):
    z = model.encode({"state": torch.randn(B, 16)})
    action, info = model.pi(z, deterministic=True)
    torch.testing.assert_close(action, info.mean)


def test_q_starts_at_zero_and_min_le_avg(model: WorldModel):
    z = model.encode({"state": torch.randn(B, 16)})
    a = torch.rand(B, A)
    assert model.Q(z, a, "avg").abs().max() < 1e-6
    with torch.no_grad():
        for w in model._Qs.weights:
            w.normal_(0, 0.5)
    torch.manual_seed(3)
    q_min = model.Q(z, a, "min")
    torch.manual_seed(3)
    q_avg = model.Q(z, a, "avg")
    assert (q_min <= q_avg + 1e-6).all() and (q_min < q_avg).any()


def test_polyak_update_moves_targets_by_tau(model: WorldModel):
    with torch.no_grad():
        for p in model._Qs.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in model._Qs.parameters()]
    before = [p.detach().clone() for p in model._target_Qs.parameters()]
    model.update_target_Q(tau=0.01)
    for p_t, b, o in zip(model._target_Qs.parameters(), before, online):
        torch.testing.assert_close(p_t, b + 0.01 * (o - b))
    assert not any(p.requires_grad for p in model._target_Qs.parameters())


def test_detached_q_trains_nothing_but_passes_gradient_to_actions(model: WorldModel):
    z = model.encode({"state": torch.randn(B, 16)}).detach()
    a = torch.rand(B, A, requires_grad=True)
    with torch.no_grad():
        model._Qs.weights[-1].normal_(0, 0.5)
    model.Q(z, a, "min", detach=True).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in model._Qs.parameters())


def test_running_scale_tracks_percentile_range(model: WorldModel):
    q = torch.linspace(0, 100, 1001)
    model.scale.update(q)
    torch.testing.assert_close(model.scale.value, torch.tensor(90.0))
    model.scale.update(torch.zeros(10))  # range floored at 1, blended with tau
    torch.testing.assert_close(model.scale.value, torch.tensor(90.0 + 0.01 * (1.0 - 90.0)))
    assert "scale.value" in model.state_dict()


def test_state_normalization_is_applied_and_saved(model: WorldModel):
    x = {"state": torch.randn(B, 16) * 5 + 3}
    before = model.encode(x)
    model.set_state_normalization(torch.full((16,), 3.0), torch.full((16,), 5.0))
    assert not torch.allclose(before, model.encode(x))
    assert torch.equal(model.state_dict()["_encoder.state_mean"], torch.full((16,), 3.0))


def test_state_std_is_floored_so_sensor_noise_on_a_sim_constant_stays_small(model: WorldModel):
    std = torch.full((16,), 0.5)
    std[3] = 0.0  # e.g. the goal's height: constant in every sim demo
    model.set_state_normalization(torch.zeros(16), std)
    stored = model.state_dict()["_encoder.state_std"]
    assert stored[3].item() == pytest.approx(STATE_STD_FLOOR)
    assert torch.equal(stored[:3], std[:3])
    # 5 mm of noise on that feature is half a std, not 10^3 of them
    assert (0.005 / stored[3]).item() <= 0.5 + 1e-6


def test_bad_configs_and_inputs_are_reported(small_cfg: ModelConfig):
    with pytest.raises(ValueError, match="multiple of"):
        WorldModel(ModelConfig(latent_dim=30), {"state": (4,)}, A)
    with pytest.raises(ValueError, match="num_q"):
        WorldModel(ModelConfig(num_q=1), {"state": (4,)}, A)
    with pytest.raises(ValueError, match="'state' and/or 'rgb'"):
        WorldModel(small_cfg, {"depth": (1, 64, 64)}, A)
    model = WorldModel(small_cfg, {"state": (4,), "rgb": (3, 64, 64)}, A)
    with pytest.raises(ValueError, match="missing \\['rgb'\\]"):
        model.encode({"state": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="return_type"):
        model.Q(torch.zeros(1, 32), torch.zeros(1, A), "max")  # type: ignore[arg-type]
