import pytest
import torch

from sim2real.discrete_regression import TwoHot, symexp, symlog


def test_symlog_symexp_are_inverse():
    x = torch.tensor([-1e4, -3.5, -1e-3, 0.0, 2e-4, 7.0, 1e5])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-6)


def test_two_hot_round_trip_within_range():
    two_hot = TwoHot()
    x = torch.cat([torch.linspace(-1000, 1000, 257), torch.tensor([0.0, 0.1, -0.1, 3.3])]).unsqueeze(-1)
    target = two_hot.encode(x)
    assert target.shape == (x.shape[0], 101)
    torch.testing.assert_close(target.sum(-1), torch.ones(x.shape[0]))
    assert ((target > 0).sum(-1) <= 2).all(), "two-hot puts mass on at most two bins"
    # Decoding the exact target probabilities (as logits) recovers the value.
    decoded = two_hot.decode(torch.log(target.clamp_min(1e-30)))
    torch.testing.assert_close(decoded, x, rtol=1e-4, atol=1e-4)


def test_two_hot_clamps_outside_range():
    two_hot = TwoHot(num_bins=11, vmin=-2.0, vmax=2.0)
    target = two_hot.encode(torch.tensor([[1e9], [-1e9]]))
    assert target[0, -1] == 1.0 and target[1, 0] == 1.0


def test_soft_ce_is_minimised_by_the_target_distribution():
    two_hot = TwoHot()
    y = torch.tensor([[4.2]])
    best = two_hot.soft_ce(torch.log(two_hot.encode(y).clamp_min(1e-30)), y)
    other = two_hot.soft_ce(torch.log(two_hot.encode(torch.tensor([[3.0]])).clamp_min(1e-30)), y)
    assert best.shape == (1, 1) and best.item() < other.item()


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="vmax > vmin"):
        TwoHot(vmin=1.0, vmax=-1.0)
    with pytest.raises(ValueError, match="trailing dim of 1"):
        TwoHot().encode(torch.zeros(3, 2))

